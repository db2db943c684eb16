use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{TimestampMicrosecondType, UInt64Type};

use super::*;

fn all(seed: u64, rows: u64, batch: usize) -> Vec<RecordBatch> {
    LogsGenerator::new(seed, rows, batch).collect()
}

fn strings(batches: &[RecordBatch], col: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col)
                .expect("column exists")
                .as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn same_seed_same_batches() {
    let a = all(7, 20_000, 4096);
    let b = all(7, 20_000, 4096);
    assert_eq!(a, b);
    let c = all(8, 20_000, 4096);
    assert_ne!(a, c);
}

#[test]
fn row_counts_and_batch_sizes() {
    let batches = all(1, 10_001, 1000);
    assert_eq!(batches.len(), 11);
    assert!(batches[..10].iter().all(|b| b.num_rows() == 1000));
    assert_eq!(batches[10].num_rows(), 1);
    let g = LogsGenerator::new(1, 10_001, 1000);
    assert_eq!(g.size_hint(), (11, Some(11)));
    assert_eq!(LogsGenerator::new(1, 0, 10).count(), 0);
    for b in &batches {
        assert_eq!(b.schema(), logs_schema());
    }
}

#[test]
fn time_is_strictly_increasing_within_the_day() {
    let batches = all(3, 50_000, 8192);
    let mut last = i64::MIN;
    for b in &batches {
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        for i in 0..ts.len() {
            let v = ts.value(i);
            assert!(v > last, "ts not increasing at {v}");
            assert!((DAY_START_US..DAY_START_US + DAY_US).contains(&v));
            last = v;
        }
    }
}

#[test]
fn request_ids_are_unique_and_predictable() {
    let batches = all(4, 30_000, 8192);
    let mut seen = HashSet::new();
    let mut row = 0u64;
    for b in &batches {
        let ids = b
            .column_by_name("request_id")
            .expect("request_id")
            .as_primitive::<UInt64Type>();
        for i in 0..ids.len() {
            assert_eq!(ids.value(i), request_id_of(4, row));
            assert!(seen.insert(ids.value(i)));
            row += 1;
        }
    }
}

#[test]
fn level_proportions_are_close_to_the_brief() {
    let rows = 200_000;
    let levels = strings(&all(5, rows, 8192), "level");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for l in levels {
        *counts.entry(l).or_default() += 1;
    }
    for (name, p) in LEVELS {
        let got = counts.get(name).copied().unwrap_or(0) as f64 / rows as f64;
        // Within 10 % relative (FATAL: 200 expected rows, so allow 30 %).
        let tol = if p < 0.01 { 0.3 } else { 0.1 };
        assert!(
            (got - p).abs() <= tol * p,
            "{name}: expected {p}, got {got}"
        );
    }
}

#[test]
fn about_five_rows_per_trace_and_close_in_time() {
    let batches = all(6, 100_000, 8192);
    let traces = strings(&batches, "trace_id");
    let mut per: HashMap<&str, (usize, usize, usize)> = HashMap::new();
    for (i, t) in traces.iter().enumerate() {
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
        let e = per.entry(t.as_str()).or_insert((0, i, i));
        e.0 += 1;
        e.2 = i;
    }
    let mean = traces.len() as f64 / per.len() as f64;
    assert!((4.5..=5.5).contains(&mean), "mean rows per trace {mean}");
    let max_span = per.values().map(|(_, a, b)| b - a).max().unwrap_or(0);
    assert!(max_span < 1000, "a trace spans {max_span} rows");
    // The trace the queries look up exists.
    let probe = trace_id_of(6, 100_000 / 10);
    assert!(per.contains_key(probe.as_str()));
}

#[test]
fn tokens_and_messages() {
    let rows = 200_000u64;
    let batches = all(9, rows, 8192);
    let messages = strings(&batches, "message");
    let timeouts = messages
        .iter()
        .filter(|m| m.contains(TIMEOUT_TOKEN))
        .count() as f64;
    let rare = messages.iter().filter(|m| m.contains(RARE_TOKEN)).count();
    assert!(
        (timeouts / rows as f64 - TIMEOUT_P).abs() < 0.15 * TIMEOUT_P,
        "timeouts {timeouts}"
    );
    assert!((5..=50).contains(&rare), "rare token rows {rare}");
    let mean_len = messages.iter().map(String::len).sum::<usize>() as f64 / rows as f64;
    assert!(
        (100.0..=140.0).contains(&mean_len),
        "mean message length {mean_len}"
    );
}

#[test]
fn zipf_tenants_and_users() {
    let rows = 100_000;
    let batches = all(10, rows, 8192);
    let tenants = strings(&batches, "tenant");
    let top = tenants.iter().filter(|t| *t == "tenant-000").count() as f64 / rows as f64;
    assert!((0.15..0.24).contains(&top), "tenant-000 share {top}");
    let distinct: HashSet<&String> = tenants.iter().collect();
    assert!(distinct.len() > 90 && distinct.len() <= TENANTS);
    let users: Vec<u64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("user_id")
                .expect("user_id")
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert!(users.iter().all(|u| (1..=USERS as u64).contains(u)));
    let user1 = users.iter().filter(|u| **u == 1).count() as f64 / rows as f64;
    assert!((0.05..0.1).contains(&user1), "user 1 share {user1}");
}

#[test]
fn services_table() {
    let b = services_batch();
    assert_eq!(b.num_rows(), SERVICES);
    let s = b.column(0).as_string::<i32>();
    assert_eq!(s.value(7), "svc-007");
}

#[test]
fn parquet_files_hold_every_row_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = write_parquet(dir.path(), 11, 30_001, 3).expect("write");
    assert_eq!(ds.logs_files.len(), 3);
    let mut rows = 0;
    let mut last = i64::MIN;
    let mut read = Vec::new();
    for p in &ds.logs_files {
        let f = File::open(p).expect("open");
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("reader")
            .build()
            .expect("build");
        for b in r {
            let b = b.expect("batch");
            let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
            assert!(ts.null_count() == 0);
            for i in 0..ts.len() {
                assert!(ts.value(i) > last);
                last = ts.value(i);
            }
            rows += b.num_rows();
            read.push(b);
        }
    }
    assert_eq!(rows, 30_001);
    let expected = all(11, 30_001, 30_001);
    let got = arrow::compute::concat_batches(&logs_schema(), &read).expect("concat");
    assert_eq!(got, expected[0]);
    assert!(ds.logs_bytes > 0);
    assert!(ds.services_file.exists());
}
