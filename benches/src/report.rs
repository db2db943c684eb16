//! Printing a [`Report`] as aligned text.

use std::fmt::Write as _;

use crate::stats::{fmt_bytes, fmt_count, fmt_ms, fmt_ratio};
use crate::suite::{Latency, Report};

/// Align `rows` under `headers`: the first column left-aligned, the others right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    aligned(headers, rows, 1)
}

/// Align `rows` under `headers`: the first `left` columns left-aligned, the others right-aligned.
pub fn aligned(headers: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        out.push_str("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if i < left {
                out.push_str(c);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    let _ = writeln!(out, "  {}", "-".repeat(total));
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn latency(l: &Option<Latency>) -> String {
    match l {
        None => "n/a".to_string(),
        Some(l) => format!(
            "p50 {} ms, p99 {} ms (n={}, {})",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p99_ms),
            l.n,
            l.what
        ),
    }
}

/// At most `n` characters of `s`, with `…` when cut.
fn clip(s: &str, n: usize) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.chars().count() <= n {
        return s;
    }
    let mut out: String = s.chars().take(n).collect();
    out.push('…');
    out
}

/// A table name without the run id suffix of the ingest matrix (`ingest_b1024_s4_w4_<run>`).
fn display_table(t: &str) -> String {
    match t.strip_prefix("ingest_") {
        Some(rest) => match rest.rsplit_once('_') {
            Some((head, _)) => format!("ingest_{head}"),
            None => t.to_string(),
        },
        None => t.to_string(),
    }
}

fn short_count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        fmt_count(n as f64)
    }
}

/// Render the whole report.
pub fn render(r: &Report) -> String {
    let m = &r.meta;
    let mut o = String::new();
    let engines: Vec<String> = m.engines.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        o,
        "\nStrata benchmark: {} rows of `logs` in {} Parquet files ({}), seed {}",
        fmt_count(m.rows as f64),
        m.files,
        fmt_bytes(Some(m.parquet_bytes as f64)),
        m.seed
    );
    let _ = writeln!(
        o,
        "strata: {} ({} build); store: {}; bench binary: {} build",
        m.strata, m.strata_build, m.store, m.bench_build
    );
    let _ = writeln!(
        o,
        "baselines: {}; {} threads each; warm = median of {}; {} ingest writers; run took {:.0} s{}",
        engines.join(", "),
        m.threads,
        m.warm_runs,
        m.writers,
        m.duration_secs,
        if m.quick { " (--quick)" } else { "" }
    );

    // Baselines.
    let b = &r.baselines;
    let mut rows = Vec::new();
    let thr = |t: &Option<crate::suite::Throughput>| match t {
        None => "n/a".to_string(),
        Some(t) => format!(
            "{} in {} ms = {}/s",
            fmt_bytes(Some(t.bytes as f64)),
            fmt_ms(Some(t.ms)),
            fmt_bytes(Some(t.bytes_per_s))
        ),
    };
    rows.push(vec![
        "raw read of the Parquet bytes, local disk (page cache)".to_string(),
        thr(&b.raw_read_disk),
    ]);
    rows.push(vec![
        "raw read of the Parquet bytes, S3 server (GET)".to_string(),
        thr(&b.raw_read_s3),
    ]);
    let enc = |e: &Option<crate::encode::EncodeRate>| match e {
        None => "n/a".to_string(),
        Some(e) => format!(
            "{} rows/s ({} rows, {} -> {}, {})",
            fmt_count(e.rows_per_s),
            fmt_count(e.rows as f64),
            fmt_bytes(Some(e.input_bytes as f64)),
            fmt_bytes(Some(e.output_bytes as f64)),
            e.what
        ),
    };
    rows.push(vec![
        "Parquet encode in-process, 1 thread".to_string(),
        enc(&b.encode_segment),
    ]);
    rows.push(vec![
        "WAL encode in-process, 1 thread".to_string(),
        enc(&b.encode_wal),
    ]);
    rows.push(vec![
        "empty Flight round trip".to_string(),
        latency(&b.flight_health),
    ]);
    rows.push(vec![
        "SELECT 1 through the gateway".to_string(),
        latency(&b.select_one),
    ]);
    if b.gateway_overhead.is_empty() {
        rows.push(vec![
            "gateway overhead".to_string(),
            "n/a (see the notes)".to_string(),
        ]);
    }
    for g in &b.gateway_overhead {
        rows.push(vec![
            format!(
                "gateway overhead: {}",
                g.gateway.what.chars().take(48).collect::<String>()
            ),
            format!(
                "p50 +{} ms, p99 +{} ms (gateway p50 {} / p99 {}, direct p50 {} / p99 {})",
                fmt_ms(g.p50_delta_ms),
                fmt_ms(g.p99_delta_ms),
                fmt_ms(g.gateway.p50_ms),
                fmt_ms(g.gateway.p99_ms),
                fmt_ms(g.direct.p50_ms),
                fmt_ms(g.direct.p99_ms)
            ),
        ]);
    }
    let _ = writeln!(o, "\nBaselines");
    o.push_str(&aligned(&["what", "result"], &rows, 2));

    // Ingest.
    let encode = b.encode_segment.as_ref().map(|e| e.rows_per_s);
    let rows: Vec<Vec<String>> = r
        .ingest
        .iter()
        .map(|i| {
            vec![
                display_table(&i.table),
                short_count(i.batch_rows as u64),
                i.shards.to_string(),
                i.writers.to_string(),
                fmt_count(i.rows as f64),
                fmt_count(i.rows_per_s),
                if i.error.is_some() {
                    "n/a".to_string()
                } else {
                    format!("{:.1}", i.bytes as f64 / 1e6 / i.secs.max(1e-9))
                },
                fmt_ms(i.ack_p50_ms),
                fmt_ms(i.ack_p99_ms),
                fmt_ratio(encode.map(|e| i.rows_per_s / e)),
                match (&i.error, i.created_by.as_str()) {
                    (Some(e), _) => format!("ERROR {}", clip(e, 100)),
                    (None, "CREATE TABLE") => String::new(),
                    (None, other) => clip(other, 100),
                },
            ]
        })
        .collect();
    let _ = writeln!(
        o,
        "\nIngest: Flight DoPut, one batch per request, durable acks (ratio = rows/s over the in-process encode rate)"
    );
    o.push_str(&table(
        &[
            "table",
            "batch",
            "shards",
            "writers",
            "rows",
            "rows/s",
            "MB/s",
            "ack p50 ms",
            "ack p99 ms",
            "vs encode",
            "note",
        ],
        &rows,
    ));
    let _ = writeln!(
        o,
        "  visible to SQL after the last ack: {} ms",
        fmt_ms(r.visible_ms)
    );

    // Queries.
    let rows: Vec<Vec<String>> = r
        .queries
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.rows
                    .map_or_else(|| "n/a".to_string(), |n| fmt_count(n as f64)),
                fmt_ms(q.strata_cold_ms),
                fmt_bytes(q.strata_cold_bytes),
                fmt_ms(q.strata_warm_ms),
                fmt_ms(q.strata_result_cache_ms),
                fmt_ms(q.datafusion.cold_ms),
                fmt_ms(q.datafusion.warm_ms),
                fmt_ms(q.duckdb.warm_ms),
                fmt_ms(q.polars.warm_ms),
                q.best_baseline.clone().unwrap_or_else(|| "n/a".to_string()),
                fmt_ratio(q.ratio_vs_best),
                fmt_ratio(q.ratio_vs_datafusion),
                match &q.strata_error {
                    Some(e) => format!("ERROR {}", clip(e, 80)),
                    None => q.check.clone(),
                },
            ]
        })
        .chain(std::iter::once({
            let g = &r.geomean;
            vec![
                format!("geomean ({} queries)", g.queries),
                String::new(),
                fmt_ms(g.strata_cold_ms),
                String::new(),
                fmt_ms(g.strata_warm_ms),
                fmt_ms(g.strata_result_cache_ms),
                String::new(),
                fmt_ms(g.datafusion_warm_ms),
                fmt_ms(g.duckdb_warm_ms),
                fmt_ms(g.polars_warm_ms),
                fmt_ms(g.best_baseline_warm_ms),
                fmt_ratio(
                    g.strata_warm_ms
                        .zip(g.best_baseline_warm_ms)
                        .map(|(a, b)| a / b),
                ),
                fmt_ratio(
                    g.strata_warm_ms
                        .zip(g.datafusion_warm_ms)
                        .map(|(a, b)| a / b),
                ),
                String::new(),
            ]
        }))
        .collect();
    let _ = writeln!(
        o,
        "\nQueries, ms (cold = first run after a restart with an empty cache; warm = median of {}; \
         bytes = read from the store by the cold run; ratios = Strata warm / baseline warm; check = answer vs DataFusion)",
        m.warm_runs
    );
    o.push_str(&table(
        &[
            "query",
            "rows",
            "strata cold",
            "bytes cold",
            "strata warm",
            "result cache",
            "datafusion cold",
            "datafusion warm",
            "duckdb warm",
            "polars warm",
            "best baseline",
            "vs best",
            "vs datafusion",
            "check",
        ],
        &rows,
    ));
    let _ = writeln!(o, "  point lookups: {}", latency(&r.point_lookup));
    let cost_rows: Vec<Vec<String>> = r
        .queries
        .iter()
        .filter(|q| q.strata_cold_cost.is_some() || q.strata_warm_cost.is_some())
        .map(|q| {
            let n = |c: &Option<serde_json::Value>, k: &str| {
                c.as_ref()
                    .and_then(|c| c.get(k))
                    .and_then(serde_json::Value::as_u64)
            };
            let count = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let bytes = |v: Option<u64>| fmt_bytes(v.map(|v| v as f64));
            let (cold, warm) = (&q.strata_cold_cost, &q.strata_warm_cost);
            let of = |c: &Option<serde_json::Value>, a: &str, b: &str| match (n(c, a), n(c, b)) {
                (Some(x), Some(y)) => format!("{x}/{y}"),
                _ => "-".to_string(),
            };
            vec![
                q.name.clone(),
                count(n(cold, "get_requests")),
                bytes(n(cold, "get_bytes")),
                bytes(n(cold, "disk_bytes")),
                count(n(warm, "get_requests")),
                bytes(n(warm, "get_bytes")),
                bytes(n(warm, "memory_bytes")),
                bytes(n(warm, "disk_bytes")),
                of(warm, "segments_pruned", "segments_total"),
                of(warm, "row_groups_pruned", "row_groups_total"),
                count(n(warm, "rows_scanned")),
            ]
        })
        .collect();
    if !cost_rows.is_empty() {
        let _ = writeln!(
            o,
            "\nWhat each query cost, as Strata reported it (cold run; last warm run): object-store \
             GETs and bytes, cache bytes by tier, pruned/total segments and row groups, rows decoded"
        );
        o.push_str(&table(
            &[
                "query",
                "cold GETs",
                "cold GET bytes",
                "cold SSD bytes",
                "warm GETs",
                "warm GET bytes",
                "warm memory bytes",
                "warm SSD bytes",
                "segments pruned",
                "row groups pruned",
                "rows scanned",
            ],
            &cost_rows,
        ));
    }

    if !r.scaling.is_empty() {
        // Smaller size first; the ratios are larger over smaller.
        let swap = m.rows2.unwrap_or(0) < m.rows;
        let (a, b) = if swap {
            (m.rows2.unwrap_or(0), m.rows)
        } else {
            (m.rows, m.rows2.unwrap_or(0))
        };
        let ordered = |x: Option<f64>, y: Option<f64>| if swap { (y, x) } else { (x, y) };
        let rows: Vec<Vec<String>> = r
            .scaling
            .iter()
            .map(|s| {
                let (s1, s2) = ordered(s.strata_ms, s.strata_ms2);
                let (d1, d2) = ordered(s.datafusion_ms, s.datafusion_ms2);
                vec![
                    s.name.clone(),
                    fmt_ms(s1),
                    fmt_ms(s2),
                    fmt_ratio(s.strata_ratio),
                    fmt_ms(d1),
                    fmt_ms(d2),
                    fmt_ratio(s.datafusion_ratio),
                ]
            })
            .collect();
        let _ = writeln!(
            o,
            "\nScaling: warm ms at {} and {} rows ({}x the data)",
            short_count(a),
            short_count(b),
            b / a.max(1)
        );
        let h1 = format!("strata {}", short_count(a));
        let h2 = format!("strata {}", short_count(b));
        let h3 = format!("datafusion {}", short_count(a));
        let h4 = format!("datafusion {}", short_count(b));
        o.push_str(&table(
            &["query", &h1, &h2, "ratio", &h3, &h4, "ratio"],
            &rows,
        ));
    }

    if !r.notes.is_empty() {
        let _ = writeln!(o, "\nNotes");
        for n in &r.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    if !r.failures.is_empty() {
        let _ = writeln!(o, "\nFAILURES");
        for f in &r.failures {
            let _ = writeln!(o, "  - {f}");
        }
    }
    o
}

/// Print the report to standard output.
pub fn print_report(r: &Report) {
    print!("{}", render(r));
}
