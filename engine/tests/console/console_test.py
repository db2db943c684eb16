#!/usr/bin/env python3
"""End-to-end test of Strata's web console in a real headless Chromium (Selenium).

Run by a Rust integration test against a running server with auth on, whose table --table
already holds rows with a `ts` time column and a `message` string column:

    python3 console_test.py --base-url http://127.0.0.1:PORT --token TOKEN --table logs \
        --screenshots DIR [--chromedriver PATH] [--chromium PATH]

Steps: auth (an error without a token, the token kept across a reload), SQL with paging and
history, the tables sidebar, the histogram (its counts add up to count(*), drag to zoom), the
live tail (a row written during the test appears; not while paused; after resume), the
cluster status. Prints one line per step passed; any failure raises (exit code 1) after
saving failure.png and printing the browser's console log. Screenshots go to --screenshots.
"""
import argparse
import json
import os
import shutil
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT = 20  # seconds, for every wait


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--base-url', required=True)
    p.add_argument('--token', required=True)
    p.add_argument('--table', required=True)
    p.add_argument('--screenshots', required=True, help='directory for the PNG artifacts')
    p.add_argument('--chromedriver')
    p.add_argument('--chromium')
    return p.parse_args()


class Console:
    """The browser, the server's HTTP API, and the steps."""

    def __init__(self, a):
        self.base = a.base_url.rstrip('/')
        self.token = a.token
        self.table = a.table
        self.shots = a.screenshots
        os.makedirs(self.shots, exist_ok=True)
        driver = a.chromedriver or shutil.which('chromedriver') or '/usr/bin/chromedriver'
        chromium = a.chromium or shutil.which('chromium') or shutil.which('chromium-browser')
        if not os.path.isfile(driver):
            raise SystemExit(f'chromedriver not found ({driver}): apt-get install chromium-driver, or pass --chromedriver')
        if not chromium or not os.path.isfile(chromium):
            raise SystemExit('chromium not found: apt-get install chromium, or pass --chromium')
        opts = Options()
        opts.binary_location = chromium
        for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1400,1000',
                    '--disable-gpu', '--no-first-run', '--disable-extensions'):
            opts.add_argument(arg)
        opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        # An explicit driver path: Selenium Manager never goes looking for (downloading) one.
        self.d = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
        self.d.set_page_load_timeout(WAIT)

    # --- helpers

    def api(self, method, path, body=None, content_type='application/json'):
        """Call the server directly (not through the page), with the token."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header('Authorization', 'Bearer ' + self.token)
        if data is not None:
            req.add_header('Content-Type', content_type)
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                return json.loads(r.read().decode() or 'null')
        except urllib.error.HTTPError as e:
            raise AssertionError(f'{method} {path}: HTTP {e.code}: {e.read().decode(errors="replace")}') from e

    def wait(self, cond, msg, timeout=WAIT):
        """Wait until cond() is truthy and return its value; else fail with msg (a string, or
        a function called then, to tell what the page shows at the time of the failure)."""
        ignored = (NoSuchElementException, StaleElementReferenceException)
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(
                lambda _d: cond())
        except TimeoutException:
            raise AssertionError(f'after {timeout} s: ' + (msg() if callable(msg) else msg)) from None

    def q(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def qa(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def text(self, css):
        return self.d.execute_script('const e = document.querySelector(arguments[0]); return e ? e.textContent : ""', css)

    def shot(self, name):
        path = os.path.join(self.shots, name)
        self.d.save_screenshot(path)
        return path

    def choose(self, select_id, value):
        """Pick `value` in a <select> once the table list has filled it."""
        self.wait(lambda: self.qa(f'#{select_id} option[value="{value}"]'),
                  lambda: f'#{select_id} does not offer {value}: {self.text("#" + select_id)!r}')
        Select(self.q('#' + select_id)).select_by_value(value)

    def set_editor(self, sql):
        ed = self.q('#sql-editor')
        ed.clear()
        ed.send_keys(sql)
        return ed

    def write_row(self, message):
        """Write one row with `message` through POST /v1/ingest, other columns filled by type."""
        info = next((t for t in self.api('GET', '/v1/tables')['tables'] if t['name'] == self.table), None)
        assert info, f'GET /v1/tables does not list {self.table}'
        now = datetime.now(timezone.utc)
        stamp = now.isoformat(timespec='microseconds').replace('+00:00', 'Z')
        row = {}
        for c in info['columns']:
            name, typ = c['name'], c['type']
            if name == (info.get('time_column') or 'ts'):
                row[name] = stamp
            elif name == 'message':
                row[name] = message
            elif c.get('nullable', True):
                continue
            elif typ.startswith('Timestamp'):
                row[name] = stamp
            elif typ.startswith('Date'):
                row[name] = now.date().isoformat()
            elif 'Int' in typ:
                row[name] = 1
            elif typ.startswith('Float') or typ.startswith('Decimal'):
                row[name] = 1.0
            elif typ == 'Boolean':
                row[name] = False
            else:
                row[name] = 'x'
        answer = self.api('POST', f'/v1/ingest/{self.table}', json.dumps(row) + '\n', 'application/x-ndjson')
        assert answer.get('rows') == 1, f'ingest did not take the row: {answer}'

    # --- steps

    def step_auth(self):
        self.d.get(self.base + '/')
        self.wait(lambda: self.q('#sql-editor').is_displayed(), 'the page did not load (#sql-editor)')
        self.set_editor('SELECT 1')
        self.q('#sql-run').click()
        err = self.wait(lambda: self.q('#sql-error').is_displayed() and self.q('#sql-error').text,
                        'no error shown for a query without a token')
        assert 'token' in err.lower() or 'unauthenticated' in err.lower(), \
            f'the error without a token does not mention the token: {err!r}'
        tok = self.q('#token')
        tok.clear()
        tok.send_keys(self.token)
        self.q('#token-save').click()
        self.wait(lambda: self.d.execute_script("return sessionStorage.getItem('strata.token')") == self.token,
                  'the token was not kept in sessionStorage')
        self.d.refresh()
        self.wait(lambda: self.q('#token').get_property('value') == self.token,
                  'the token field is empty after a reload')
        self.set_editor('SELECT 1')
        self.q('#sql-run').click()
        self.wait(lambda: len(self.qa('#sql-result table.result tbody tr')) == 1,
                  lambda: f'SELECT 1 with the kept token gave no row (error: {self.text("#sql-error")!r})')
        assert not self.q('#sql-error').is_displayed(), f'an error is shown: {self.text("#sql-error")}'

    def step_sql(self):
        stmt = f'SELECT * FROM {self.table} ORDER BY ts LIMIT 250'
        ed = self.set_editor(stmt)
        ActionChains(self.d).key_down(Keys.CONTROL, ed).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
        self.wait(lambda: '250' in self.text('#sql-pager-info'),
                  lambda: f'Ctrl+Enter: the pager does not show 250 rows: {self.text("#sql-pager-info")!r} '
                  f'(error: {self.text("#sql-error")!r})')
        rows = self.qa('#sql-result table.result tbody tr')
        assert len(rows) == 100, f'page 1 shows {len(rows)} rows, not 100'
        first = rows[0].text
        self.q('#sql-pager-next').click()
        self.wait(lambda: '101' in self.text('#sql-pager-info'), 'Next did not go to rows 101–200')
        rows = self.qa('#sql-result table.result tbody tr')
        assert len(rows) == 100, f'page 2 shows {len(rows)} rows, not 100'
        assert rows[0].text != first, 'page 2 shows the same first row as page 1'
        assert stmt in self.text('#sql-history'), 'the statement is not in the history'
        self.shot('sql.png')

    def step_tables(self):
        entry = self.wait(lambda: self.q(f'#tables [data-table="{self.table}"]'),
                          f'the sidebar does not list {self.table}')
        entry.click()
        self.wait(lambda: self.q('#table-detail').is_displayed(), 'clicking the table shows no details')
        cols = [e.get_attribute('data-column') for e in self.qa('#table-detail tr[data-column]')]
        assert 'ts' in cols and 'message' in cols, f'the columns shown are {cols}, without ts and message'

    def bars(self):
        return [int(b.get_attribute('data-n')) for b in self.qa('#hist-svg rect.bar')]

    def hist_done(self, after_version):
        """The chart was drawn again since `after_version` and no run is under way."""
        svg = self.q('#hist-svg')
        return svg.get_attribute('data-busy') is None and int(svg.get_attribute('data-version') or 0) > after_version

    def count(self, where=''):
        """count(*) of the table through the API (not the page)."""
        answer = self.api('POST', '/v1/sql', json.dumps({'sql': f'SELECT count(*) FROM {self.table}{where}'}))
        return int(answer['rows'][0][0])

    def step_histogram(self):
        self.q('#tab-histogram').click()
        self.choose('hist-table', self.table)
        self.q('#hist-run').click()
        self.wait(lambda: self.hist_done(0) and self.bars(),
                  lambda: f'no histogram bars (error: {self.text("#hist-error")!r})')
        total, count = sum(self.bars()), self.count()
        assert total == count, f'the histogram counts {total} rows, count(*) says {count}'
        self.wait(lambda: self.qa('#hist-rows table.result tbody tr'), 'no rows below the histogram')
        frm, to = self.q('#hist-from').get_property('value'), self.q('#hist-to').get_property('value')
        version = int(self.q('#hist-svg').get_attribute('data-version'))
        svg = self.q('#hist-svg')
        width = svg.size['width']
        # Drag across the middle third (offsets are from the element's centre).
        (ActionChains(self.d).move_to_element_with_offset(svg, int(-width / 6), 0).click_and_hold()
         .move_by_offset(int(width / 6), 0).move_by_offset(int(width / 6), 0).release().perform())
        self.wait(lambda: self.hist_done(version), lambda: f'the drag did not redraw the histogram '
                  f'(error: {self.text("#hist-error")!r})')
        nfrm, nto = self.q('#hist-from').get_property('value'), self.q('#hist-to').get_property('value')
        span = lambda a, b: (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
        assert datetime.fromisoformat(nfrm) >= datetime.fromisoformat(frm) and \
            datetime.fromisoformat(nto) <= datetime.fromisoformat(to) and span(nfrm, nto) < 0.6 * span(frm, to), \
            f'the zoom did not narrow the range: {frm}..{to} -> {nfrm}..{nto}'
        # The inputs hold UTC times; the zoomed bars count the rows of exactly that range.
        utc = lambda v: datetime.fromisoformat(v).isoformat(timespec='milliseconds') + 'Z'
        zoomed = self.count(f" WHERE ts >= TIMESTAMP '{utc(nfrm)}' AND ts < TIMESTAMP '{utc(nto)}'")
        assert sum(self.bars()) == zoomed, f'the zoomed histogram counts {sum(self.bars())} rows, the range holds {zoomed}'
        self.shot('histogram.png')

    def tail_has(self, marker):
        return marker in self.text('#tail-rows')

    def step_tail(self):
        self.q('#tab-tail').click()
        self.choose('tail-table', self.table)
        start = self.q('#tail-from')
        start.clear()
        start.send_keys('end')
        self.q('#tail-start').click()
        self.wait(lambda: 'following' in self.text('#tail-state'),
                  lambda: f'the tail is not following: {self.text("#tail-state")!r} (error: {self.text("#tail-error")!r})')
        marker = f'console-tail-{uuid.uuid4()}'
        self.write_row(marker)
        self.wait(lambda: self.tail_has(marker), f'the tail did not show the row written ({marker})')
        self.q('#tail-pause').click()
        self.wait(lambda: 'paused' in self.text('#tail-state'), 'Pause did not pause the tail')
        paused = f'console-tail-paused-{uuid.uuid4()}'
        self.write_row(paused)
        time.sleep(3)
        assert not self.tail_has(paused), 'a row written while paused appeared before resuming'
        self.q('#tail-pause').click()  # now labelled Resume
        self.wait(lambda: self.tail_has(paused), 'after Resume, the row written while paused did not appear')
        assert self.text('#tail-rows').count(marker) == 1, 'the first row shows more than once after resuming'
        self.shot('tail.png')

    def step_cluster(self):
        self.q('#tab-cluster').click()
        self.wait(lambda: self.table in self.text('#cluster-tables'),
                  lambda: f'the cluster tables do not list {self.table} (error: {self.text("#cluster-error")!r})')
        assert self.text('#cluster-nodes').strip(), 'the nodes section is empty'
        self.shot('cluster.png')

    def run(self):
        steps = [('auth: error without a token, token kept across a reload', self.step_auth),
                 ('sql: Ctrl+Enter, 100 rows a page, next page, history', self.step_sql),
                 ('tables: sidebar lists the table and its columns', self.step_tables),
                 ('histogram: bars add up to count(*), rows below, drag zooms', self.step_histogram),
                 ('tail: a written row appears, not while paused, after resume', self.step_tail),
                 ('cluster: the status lists the table', self.step_cluster)]
        for name, fn in steps:
            try:
                fn()
            except Exception:
                print(f'FAIL {name}', flush=True)
                self.on_failure()
                raise
            print(f'ok   {name}', flush=True)

    def on_failure(self):
        try:
            print('screenshot:', self.shot('failure.png'))
        except Exception as e:  # the browser may be gone
            print('no failure screenshot:', e)
        try:
            for entry in self.d.get_log('browser'):
                print('browser console:', entry.get('level'), entry.get('message'))
        except Exception as e:
            print('no browser log:', e)


def main():
    a = parse_args()
    c = Console(a)
    try:
        c.run()
    finally:
        c.d.quit()
    print('console test passed; screenshots in', a.screenshots)


if __name__ == '__main__':
    try:
        main()
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(1)
