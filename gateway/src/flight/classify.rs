//! Which scope a SQL statement needs.
//!
//! Flight SQL lets a client send any statement down the query path (`GetFlightInfo` +
//! `DoGet`), so the gateway cannot rely on the RPC to tell reads from writes. A small lexer
//! (strings, quoted identifiers and comments skipped) decides: a statement is a read only
//! when it starts with a query keyword and contains no keyword that changes data, schema or
//! permissions anywhere (which also catches `EXPLAIN ANALYZE INSERT …` and
//! `SELECT 1; DROP …`). Everything else needs the `write` scope. The check errs towards
//! `write`: an unquoted column named like a write keyword must be quoted by read-only tokens.

use crate::auth::Scope;

const READ_FIRST: &[&str] = &[
    "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "VALUES", "EXPLAIN",
];
const WRITE_ANYWHERE: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY", "GRANT",
    "REVOKE", "REPLACE", "UPSERT", "VACUUM", "SET",
];

/// `Read` for queries, `Write` for anything that may change state.
pub(crate) fn required_scope(sql: &str) -> Scope {
    let mut words = Words::new(sql);
    let Some(first) = words.next() else {
        return Scope::Read;
    };
    if !READ_FIRST.iter().any(|k| first.eq_ignore_ascii_case(k)) {
        return Scope::Write;
    }
    if words.any(|w| WRITE_ANYWHERE.iter().any(|k| w.eq_ignore_ascii_case(k))) {
        return Scope::Write;
    }
    Scope::Read
}

/// Bare words of a SQL text, outside literals, quoted identifiers and comments.
struct Words<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            s: text.as_bytes(),
            text,
            i: 0,
        }
    }

    fn skip_quoted(&mut self, quote: u8) {
        // Opening quote at self.i; a doubled quote is an escaped one.
        self.i += 1;
        while self.i < self.s.len() {
            if self.s[self.i] == quote {
                if self.s.get(self.i + 1) == Some(&quote) {
                    self.i += 2;
                    continue;
                }
                self.i += 1;
                return;
            }
            self.i += 1;
        }
    }

    /// `$tag$ … $tag$` (tag possibly empty); `$1` placeholders are not quotes.
    fn skip_dollar(&mut self) -> bool {
        let start = self.i;
        let mut j = self.i + 1;
        while j < self.s.len() && (self.s[j].is_ascii_alphanumeric() || self.s[j] == b'_') {
            if j == start + 1 && self.s[j].is_ascii_digit() {
                return false;
            }
            j += 1;
        }
        if self.s.get(j) != Some(&b'$') {
            return false;
        }
        let tag = &self.s[start..=j];
        let body = j + 1;
        let end = self.s[body..]
            .windows(tag.len())
            .position(|w| w == tag)
            .map(|p| body + p + tag.len())
            .unwrap_or(self.s.len());
        self.i = end;
        true
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while self.i < self.s.len() {
            let c = self.s[self.i];
            match c {
                b'\'' | b'"' | b'`' => self.skip_quoted(c),
                b'-' if self.s.get(self.i + 1) == Some(&b'-') => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                b'/' if self.s.get(self.i + 1) == Some(&b'*') => {
                    let body = self.i + 2;
                    self.i = self.s[body..]
                        .windows(2)
                        .position(|w| w == b"*/")
                        .map(|p| body + p + 2)
                        .unwrap_or(self.s.len());
                }
                b'$' => {
                    if !self.skip_dollar() {
                        self.i += 1;
                    }
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let start = self.i;
                    while self.i < self.s.len()
                        && (self.s[self.i].is_ascii_alphanumeric()
                            || self.s[self.i] == b'_'
                            || self.s[self.i] >= 0x80)
                    {
                        self.i += 1;
                    }
                    return self.text.get(start..self.i);
                }
                c if c.is_ascii_digit() || c >= 0x80 => {
                    // Numbers and non-ASCII identifiers: one run, not a keyword.
                    while self.i < self.s.len()
                        && (self.s[self.i].is_ascii_alphanumeric()
                            || self.s[self.i] == b'_'
                            || self.s[self.i] >= 0x80)
                    {
                        self.i += 1;
                    }
                }
                _ => self.i += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads() {
        for sql in [
            "SELECT * FROM logs",
            "  select level, count(*) from logs group by level",
            "WITH t AS (SELECT 1) SELECT * FROM t",
            "(SELECT 1) UNION ALL (SELECT 2)",
            "SELECT 'DELETE FROM x' AS s, \"update\" FROM t -- drop table t",
            "/* create */ SELECT $1, $2 FROM t WHERE msg LIKE '%insert%'",
            "SELECT $$ drop $$ FROM t",
            "SHOW TABLES",
            "EXPLAIN SELECT 1",
            "SELECT last_update, created_at FROM t",
            "",
        ] {
            assert_eq!(required_scope(sql), Scope::Read, "{sql}");
        }
    }

    #[test]
    fn writes() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "delete from logs where ts < now()",
            "CREATE TABLE t (a INT)",
            "SELECT 1; DROP TABLE logs",
            "EXPLAIN ANALYZE INSERT INTO t SELECT * FROM u",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "SET datafusion.execution.batch_size = 1",
            "COPY t TO 'file.parquet'",
        ] {
            assert_eq!(required_scope(sql), Scope::Write, "{sql}");
        }
    }
}
