//! The 12 query kinds of BRIEF.md over the generated `logs` table (segments + WAL) and the
//! `services` dimension table. Expected results are computed from the generated rows in
//! plain Rust, never by running SQL.

use std::collections::{BTreeMap, BTreeSet};

use crate::testing::{Cell, Fixture, LogRow, RARE_TOKEN, STEP, T0, query, test_config, ts_lit};

struct Case {
    name: &'static str,
    sql: String,
    expected: Vec<Vec<Cell>>,
}

fn count_by<K: Ord>(rows: impl Iterator<Item = K>) -> BTreeMap<K, usize> {
    let mut m = BTreeMap::new();
    for k in rows {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// percentile_cont: linear interpolation at p * (n - 1). DataFusion quantizes the
/// interpolation weight to 1e-6, so the answer is allowed that much of the gap.
fn percentile_cont(mut v: Vec<f64>, p: f64) -> Cell {
    v.sort_by(f64::total_cmp);
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let gap = v[hi] - v[lo];
    Cell::Approx(v[lo] + gap * (pos - lo as f64), gap * 1e-6 + 1e-12)
}

fn cases(f: &Fixture) -> Vec<Case> {
    let rows = &f.rows;
    let last = rows.iter().map(|r| r.ts).max().unwrap_or(T0);
    let mut out = Vec::new();

    // 1. Point lookup by id (a row in a segment and a row only in the WAL).
    for idx in [1234usize, rows.len() - 3] {
        let r = &rows[idx];
        out.push(Case {
            name: "point lookup",
            sql: format!(
                "SELECT host, level, message FROM logs WHERE request_id = {}",
                r.request_id
            ),
            expected: vec![vec![
                r.host.as_str().into(),
                r.level.as_str().into(),
                r.message.as_str().into(),
            ]],
        });
    }

    // 2. Trace lookup ordered by time.
    let trace = &rows[777].trace_id;
    let mut t: Vec<&LogRow> = rows.iter().filter(|r| &r.trace_id == trace).collect();
    t.sort_by_key(|r| r.ts);
    out.push(Case {
        name: "trace lookup",
        sql: format!("SELECT ts, request_id FROM logs WHERE trace_id = '{trace}' ORDER BY ts"),
        expected: t
            .iter()
            .map(|r| vec![r.ts.into(), r.request_id.into()])
            .collect(),
    });

    // 3. Last-hour aggregate by level.
    let from = last - 3_600_000_000;
    let by_level = count_by(
        rows.iter()
            .filter(|r| r.ts >= from)
            .map(|r| r.level.clone()),
    );
    out.push(Case {
        name: "last hour by level",
        sql: format!(
            "SELECT level, count(*) FROM logs WHERE ts >= {} GROUP BY level ORDER BY level",
            ts_lit(from)
        ),
        expected: by_level
            .into_iter()
            .map(|(l, c)| vec![l.into(), c.into()])
            .collect(),
    });

    // 4. Per-minute histogram for one tenant over two hours.
    let (a, b) = (T0 + 3 * 3_600_000_000, T0 + 5 * 3_600_000_000);
    let minute = 60_000_000;
    let hist = count_by(
        rows.iter()
            .filter(|r| r.tenant == "t1" && r.ts >= a && r.ts < b)
            .map(|r| r.ts - r.ts.rem_euclid(minute)),
    );
    out.push(Case {
        name: "per-minute histogram",
        sql: format!(
            "SELECT date_trunc('minute', ts) AS m, count(*) FROM logs \
             WHERE tenant = 't1' AND ts >= {} AND ts < {} GROUP BY m ORDER BY m",
            ts_lit(a),
            ts_lit(b)
        ),
        expected: hist
            .into_iter()
            .map(|(m, c)| vec![m.into(), c.into()])
            .collect(),
    });

    // 5. Top-k hosts.
    let mut hosts: Vec<(String, usize)> = count_by(rows.iter().map(|r| r.host.clone()))
        .into_iter()
        .collect();
    hosts.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    out.push(Case {
        name: "top-k hosts",
        sql: "SELECT host, count(*) AS c FROM logs GROUP BY host ORDER BY c DESC, host LIMIT 5"
            .into(),
        expected: hosts
            .iter()
            .take(5)
            .map(|(h, c)| vec![h.as_str().into(), (*c).into()])
            .collect(),
    });

    // 6. p99 latency per path.
    let mut by_path: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows {
        by_path.entry(&r.path).or_default().push(r.latency_ms);
    }
    out.push(Case {
        name: "p99 latency per path",
        sql: "SELECT path, percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) FROM logs \
              GROUP BY path ORDER BY path"
            .into(),
        expected: by_path
            .into_iter()
            .map(|(p, v)| vec![p.into(), percentile_cont(v, 0.99)])
            .collect(),
    });

    // 7. Errors per service.
    let errors = count_by(
        rows.iter()
            .filter(|r| r.level == "ERROR" || r.level == "FATAL")
            .map(|r| r.service.clone()),
    );
    out.push(Case {
        name: "errors per service",
        sql: "SELECT service, count(*) FROM logs WHERE level IN ('ERROR', 'FATAL') GROUP BY service ORDER BY service"
            .into(),
        expected: errors.into_iter().map(|(s, c)| vec![s.into(), c.into()]).collect(),
    });

    // 8. Rare-token LIKE count.
    let rare = rows
        .iter()
        .filter(|r| r.message.contains(RARE_TOKEN))
        .count();
    assert!(rare > 0, "the generator must produce the rare token");
    out.push(Case {
        name: "rare token",
        sql: format!("SELECT count(*) FROM logs WHERE message LIKE '%{RARE_TOKEN}%'"),
        expected: vec![vec![rare.into()]],
    });

    // 9. `timeout` newest first with LIMIT.
    let mut timeouts: Vec<&LogRow> = rows
        .iter()
        .filter(|r| r.message.contains("timeout"))
        .collect();
    timeouts.sort_by_key(|r| std::cmp::Reverse(r.ts));
    out.push(Case {
        name: "timeout newest first",
        sql: "SELECT ts, request_id FROM logs WHERE message LIKE '%timeout%' ORDER BY ts DESC LIMIT 10".into(),
        expected: timeouts
            .iter()
            .take(10)
            .map(|r| vec![r.ts.into(), r.request_id.into()])
            .collect(),
    });

    // 10. Count distinct users.
    let users: BTreeSet<u64> = rows.iter().map(|r| r.user_id).collect();
    out.push(Case {
        name: "distinct users",
        sql: "SELECT count(DISTINCT user_id) FROM logs".into(),
        expected: vec![vec![users.len().into()]],
    });

    // 11. Join with the dimension table.
    let team: BTreeMap<&str, &str> = f
        .services
        .iter()
        .map(|s| (s.0.as_str(), s.1.as_str()))
        .collect();
    let by_team = count_by(
        rows.iter()
            .filter(|r| r.level == "ERROR")
            .filter_map(|r| team.get(r.service.as_str()).map(|t| t.to_string())),
    );
    out.push(Case {
        name: "join services",
        sql: "SELECT s.team, count(*) FROM logs l JOIN services s ON l.service = s.service \
              WHERE l.level = 'ERROR' GROUP BY s.team ORDER BY s.team"
            .into(),
        expected: by_team
            .into_iter()
            .map(|(t, c)| vec![t.into(), c.into()])
            .collect(),
    });

    // 11b. A join aggregated before joining (rules/eager_agg.rs): several aggregate kinds,
    // grouped by a dimension column and a fact column; log rows of unknown services drop out.
    let svc: BTreeMap<&str, &str> = f
        .services
        .iter()
        .map(|s| (s.0.as_str(), s.2.as_str()))
        .collect();
    let mut by_tier: BTreeMap<(String, String), (usize, i64, i64, i64)> = BTreeMap::new();
    for r in rows {
        if let Some(tier) = svc.get(r.service.as_str()) {
            let e = by_tier
                .entry((tier.to_string(), r.level.clone()))
                .or_insert((0, 0, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 += r.bytes;
            e.2 = e.2.min(r.bytes);
            e.3 = e.3.max(r.bytes);
        }
    }
    assert!(
        rows.iter().any(|r| !svc.contains_key(r.service.as_str())),
        "some log rows must have a service missing from `services`"
    );
    out.push(Case {
        name: "join aggregated before joining",
        sql: "SELECT s.tier, l.level, count(*), sum(l.bytes), min(l.bytes), max(l.bytes) \
              FROM logs l JOIN services s ON l.service = s.service \
              GROUP BY s.tier, l.level ORDER BY s.tier, l.level"
            .into(),
        expected: by_tier
            .into_iter()
            .map(|((t, l), (n, sum, lo, hi))| {
                vec![
                    t.into(),
                    l.into(),
                    n.into(),
                    sum.into(),
                    lo.into(),
                    hi.into(),
                ]
            })
            .collect(),
    });

    // 12. Last row per host.
    let mut last_per_host: BTreeMap<&str, &LogRow> = BTreeMap::new();
    for r in rows {
        let e = last_per_host.entry(&r.host).or_insert(r);
        if r.ts > e.ts {
            *e = r;
        }
    }
    out.push(Case {
        name: "last row per host",
        sql: "SELECT host, max(ts), last_value(request_id ORDER BY ts) FROM logs GROUP BY host ORDER BY host".into(),
        expected: last_per_host
            .values()
            .map(|r| vec![r.host.as_str().into(), r.ts.into(), r.request_id.into()])
            .collect(),
    });

    // 12b. The same with row_number() = 1 (rewritten into an aggregate: see rules/last_row.rs),
    // with an extra condition kept above it, and a window that must not be rewritten.
    let newest: Vec<Vec<Cell>> = last_per_host
        .values()
        .map(|r| {
            vec![
                r.host.as_str().into(),
                r.ts.into(),
                r.request_id.into(),
                1u64.into(),
            ]
        })
        .collect();
    out.push(Case {
        name: "last row per host (row_number)",
        sql: "SELECT host, ts, request_id, rn FROM (SELECT host, ts, request_id, \
              row_number() OVER (PARTITION BY host ORDER BY ts DESC) AS rn FROM logs) t \
              WHERE rn = 1 ORDER BY host"
            .into(),
        expected: newest.clone(),
    });
    let first_host = last_per_host.keys().next().copied().unwrap_or_default();
    out.push(Case {
        name: "last row per host (row_number, extra conjunct)",
        sql: format!(
            "SELECT * FROM (SELECT host, ts, request_id, row_number() OVER \
             (PARTITION BY host ORDER BY ts DESC) AS rn FROM logs) WHERE 1 >= rn AND host = '{first_host}'"
        ),
        expected: newest[..1].to_vec(),
    });
    let mut second_per_host: BTreeMap<&str, Vec<&LogRow>> = BTreeMap::new();
    for r in rows {
        second_per_host.entry(&r.host).or_default().push(r);
    }
    out.push(Case {
        name: "second row per host (not rewritten)",
        sql: "SELECT host, ts FROM (SELECT host, ts, row_number() OVER \
              (PARTITION BY host ORDER BY ts DESC) AS rn FROM logs) WHERE rn = 2 ORDER BY host"
            .into(),
        expected: second_per_host
            .into_iter()
            .filter_map(|(h, mut v)| {
                v.sort_by_key(|r| std::cmp::Reverse(r.ts));
                v.get(1).map(|r| vec![h.into(), r.ts.into()])
            })
            .collect(),
    });

    // Also: plain totals (segments + WAL, nothing below the WAL floor twice).
    out.push(Case {
        name: "count all",
        sql: "SELECT count(*), count(DISTINCT request_id), min(ts), max(ts) FROM logs".into(),
        expected: vec![vec![
            rows.len().into(),
            rows.len().into(),
            rows.iter().map(|r| r.ts).min().unwrap_or(0).into(),
            last.into(),
        ]],
    });
    assert!(last > T0 + (rows.len() as i64 - 2) * STEP);
    out
}

#[tokio::test]
async fn the_twelve_query_kinds() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    for case in cases(&f) {
        assert!(
            !case.expected.is_empty(),
            "{}: empty expectation",
            case.name
        );
        let got = query(&engine, &case.sql).await;
        assert_eq!(got, case.expected, "{}: {}", case.name, case.sql);
    }
}

#[tokio::test]
async fn row_number_one_is_planned_as_an_aggregate() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let plan = |sql: String| {
        let engine = engine.clone();
        async move {
            query(&engine, &format!("EXPLAIN {sql}"))
                .await
                .into_iter()
                .map(|row| format!("{row:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let window = |order: &str, rn: u32| {
        format!(
            "SELECT host, ts, level FROM (SELECT host, ts, level, row_number() OVER \
             (PARTITION BY host ORDER BY {order}) AS rn FROM logs) WHERE rn = {rn}"
        )
    };
    // Two ordering columns: first_value per column in that order.
    let rewritten = plan(window("ts DESC, request_id DESC", 1)).await;
    assert!(rewritten.contains("first_value(logs.level"), "{rewritten}");
    assert!(!rewritten.contains("WindowAggr"), "{rewritten}");
    // One non-null ordering column: its max per key, joined back to the rows, with the
    // per-key side held whole so its bounds prune the second scan.
    let joined = plan(window("ts DESC", 1)).await;
    assert!(
        joined.contains("max(logs.ts) AS __strata_last_key_max"),
        "{joined}"
    );
    assert!(joined.contains("mode=CollectLeft"), "{joined}");
    assert!(joined.contains("DynamicFilter"), "{joined}");
    assert!(!joined.contains("WindowAggr"), "{joined}");
    let kept = plan(window("ts DESC", 3)).await;
    assert!(kept.contains("WindowAggr"), "{kept}");
    assert!(!kept.contains("first_value"), "{kept}");
}

/// The join-back form's second scan skips the segments older than the oldest of the newest
/// rows per key (the dynamic filter from the held side), which a partitioned join would not.
#[tokio::test]
async fn the_last_row_join_back_prunes_its_second_scan() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let sql = "EXPLAIN ANALYZE SELECT host, ts, level FROM (SELECT host, ts, level, \
               row_number() OVER (PARTITION BY host ORDER BY ts DESC) AS rn FROM logs) \
               WHERE rn = 1";
    let text = format!("{:?}", query(&engine, sql).await);
    let (total, matched) = super::dynamic_filter_file_pruning(&text);
    assert!(
        total > 1 && matched < total,
        "no segment skipped: {total} → {matched}"
    );
    assert_eq!(
        query(&engine, &sql["EXPLAIN ANALYZE ".len()..]).await.len(),
        f.rows
            .iter()
            .map(|r| r.host.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "one row per host"
    );
}

#[tokio::test]
async fn joins_to_small_tables_aggregate_first() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let explain = |sql: &str| {
        let (engine, sql) = (engine.clone(), format!("EXPLAIN {sql}"));
        async move { format!("{:?}", query(&engine, &sql).await) }
    };
    let eager = explain(
        "SELECT s.team, count(*), sum(l.bytes) FROM logs l JOIN services s \
         ON l.service = s.service GROUP BY s.team",
    )
    .await;
    assert!(eager.contains("__strata_partial_"), "{eager}");
    // Aggregates over the small side, DISTINCT, or avg: planned as written.
    for sql in [
        "SELECT l.host, count(s.tier) FROM logs l JOIN services s ON l.service = s.service GROUP BY l.host",
        "SELECT s.team, count(DISTINCT l.host) FROM logs l JOIN services s ON l.service = s.service GROUP BY s.team",
        "SELECT s.team, avg(l.bytes) FROM logs l JOIN services s ON l.service = s.service GROUP BY s.team",
    ] {
        let plan = explain(sql).await;
        assert!(!plan.contains("__strata_partial_"), "{sql}: {plan}");
    }
}
