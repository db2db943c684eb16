use std::io::Write;

use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

fn ingest_args(argv: &[&str]) -> IngestArgs {
    let mut full = vec!["strata", "ingest"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Ingest(a) => a,
        other => panic!("parsed {other:?}"),
    }
}

fn write_file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = File::create(&path).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    path
}

/// Every batch of a file, and the position after the last one.
fn read_all(path: &Path, batch_rows: usize) -> (Vec<RecordBatch>, u64) {
    let kind = FileKind::of(path).unwrap();
    let mut source = open(path, kind, batch_rows, 1000).unwrap();
    let mut batches = Vec::new();
    let mut pos = 0;
    for b in source.batches.by_ref() {
        let b = b.unwrap();
        pos = (source.position)(&b);
        batches.push(b);
    }
    (batches, pos)
}

fn micros(batch: &RecordBatch, col: &str) -> Vec<i64> {
    let a = batch.column_by_name(col).unwrap();
    let a = a
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    a.values().to_vec()
}

const MICROS: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

#[test]
fn table_names_come_from_file_names() {
    assert_eq!(
        table_name_for(Path::new("data/Web Logs-2024.csv")),
        "web_logs_2024"
    );
    assert_eq!(table_name_for(Path::new("LOGS.parquet")), "logs");
    assert_eq!(table_name_for(Path::new("/x/a.b.jsonl")), "a_b");
    assert_eq!(table_name_for(Path::new("2024.csv")), "t_2024");
    assert_eq!(table_name_for(Path::new("café.csv")), "caf_");
}

#[test]
fn file_kinds_from_extensions() {
    assert_eq!(
        FileKind::of(Path::new("a.CSV")).unwrap(),
        FileKind::Csv { delimiter: b',' }
    );
    assert_eq!(
        FileKind::of(Path::new("a.tsv")).unwrap(),
        FileKind::Csv { delimiter: b'\t' }
    );
    for f in ["a.json", "a.jsonl", "a.ndjson"] {
        assert_eq!(FileKind::of(Path::new(f)).unwrap(), FileKind::Json);
    }
    assert_eq!(
        FileKind::of(Path::new("a.parquet")).unwrap(),
        FileKind::Parquet
    );
    let e = FileKind::of(Path::new("a.xlsx")).unwrap_err();
    assert!(e.contains("a.xlsx") && e.contains(".csv"), "{e}");
}

#[test]
fn plan_checks_files_and_names_tables() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(&dir, "Events.csv", "x\n1\n");
    let b = write_file(&dir, "more.jsonl", "{\"x\":1}\n");
    let args = ingest_args(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(args.batch_rows, 65536);
    assert_eq!(args.infer_rows, 1000);
    let jobs = plan(&args).unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.table.as_str()).collect::<Vec<_>>(),
        ["events", "more"]
    );
    assert_eq!(jobs[0].size, 4);

    let args = ingest_args(&["--table", "t", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(plan(&args).unwrap().iter().all(|j| j.table == "t"));

    let missing = dir.path().join("missing.csv");
    let e = plan(&ingest_args(&[missing.to_str().unwrap()])).unwrap_err();
    assert!(e.contains("missing.csv"), "{e}");
    let e = plan(&ingest_args(&["--batch-rows", "0", a.to_str().unwrap()])).unwrap_err();
    assert!(e.contains("--batch-rows"), "{e}");
}

#[test]
fn csv_time_columns_become_microsecond_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "logs.csv",
        "ts,time,level,n\n\
         2024-01-01T00:00:00Z,12:30,INFO,1\n\
         2024-01-01T00:00:01.5+01:00,13:00,WARN,2\n\
         2024-01-01 00:00:02,14:00,ERROR,\n",
    );
    let (batches, pos) = read_all(&path, 2);
    assert_eq!(pos, std::fs::metadata(&path).unwrap().len());
    assert_eq!(batches.len(), 2);
    let schema = batches[0].schema();
    assert_eq!(schema.field_with_name("ts").unwrap().data_type(), &MICROS);
    // Not date-times: kept as text.
    assert_eq!(
        schema.field_with_name("time").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("n").unwrap().data_type(),
        &DataType::Int64
    );
    let base = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
    assert_eq!(
        micros(&batches[0], "ts"),
        vec![base, base + 1_500_000 - 3_600_000_000]
    );
    assert_eq!(micros(&batches[1], "ts"), vec![base + 2_000_000]);
    assert!(batches[1].column_by_name("n").unwrap().is_null(0));
}

#[test]
fn csv_dates_and_other_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "d.tsv",
        "timestamp\tv\n2024-01-01\ta\n2024-01-02\tb\n",
    );
    let (batches, _) = read_all(&path, 100);
    assert_eq!(batches[0].schema().field(0).data_type(), &MICROS);
    assert_eq!(
        micros(&batches[0], "timestamp"),
        vec![1_704_067_200_000_000, 1_704_153_600_000_000]
    );
    // Only the three names count.
    let path = write_file(&dir, "e.csv", "created,v\n2024-01-01T00:00:00,1\n");
    let (batches, _) = read_all(&path, 100);
    assert!(matches!(
        batches[0].schema().field(0).data_type(),
        DataType::Timestamp(TimeUnit::Second, None)
    ));
}

#[test]
fn json_time_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "events.ndjson",
        "{\"ts\":\"2024-01-01T00:00:00Z\",\"time\":5,\"msg\":\"a\"}\n\
         {\"ts\":\"2024-01-01T00:00:01.000001Z\",\"time\":6,\"msg\":null}\n",
    );
    let (batches, pos) = read_all(&path, 10);
    assert_eq!(pos, std::fs::metadata(&path).unwrap().len());
    let schema = batches[0].schema();
    assert_eq!(schema.field_with_name("ts").unwrap().data_type(), &MICROS);
    // Numbers are not re-interpreted.
    assert_eq!(
        schema.field_with_name("time").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        micros(&batches[0], "ts"),
        vec![1_704_067_200_000_000, 1_704_067_201_000_001]
    );
    let msg = batches[0].column_by_name("msg").unwrap();
    let msg = msg.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((msg.value(0), msg.is_null(1)), ("a", true));
}

#[test]
fn json_text_time_that_does_not_parse_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        &dir,
        "a.json",
        "{\"time\":\"noon\"}\n{\"time\":\"2024-01-01T00:00:00Z\"}\n",
    );
    let (batches, _) = read_all(&path, 10);
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Utf8);
}

#[test]
fn csv_type_errors_suggest_more_inference() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("n\n");
    for i in 0..5 {
        body.push_str(&format!("{i}\n"));
    }
    body.push_str("oops\n");
    let path = write_file(&dir, "n.csv", &body);
    let kind = FileKind::of(&path).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    read_file(&path, kind, 100, 3, &tx);
    drop(tx);
    let first = rx.blocking_recv().unwrap();
    let e = first.err().unwrap();
    assert!(
        e.contains("--infer-rows") && e.contains("first 3 rows"),
        "{e}"
    );
}

#[test]
fn parquet_is_read_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.parquet");
    let batch =
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from_iter_values(0..1000)) as _)])
            .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let (batches, pos) = read_all(&path, 300);
    assert_eq!(
        batches
            .iter()
            .map(RecordBatch::num_rows)
            .collect::<Vec<_>>(),
        [300, 300, 300, 100]
    );
    assert_eq!(pos, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn big_batches_are_split() {
    let batch =
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from_iter_values(0..10_000)) as _)])
            .unwrap();
    let size = batch.get_array_memory_size();
    assert_eq!(pieces(batch.clone(), size).len(), 1);
    let split = pieces(batch.clone(), size / 4);
    assert!(split.len() >= 4, "{}", split.len());
    assert_eq!(
        split.iter().map(RecordBatch::num_rows).sum::<usize>(),
        10_000
    );
    assert!(pieces(batch.slice(0, 0), 1).is_empty());
}

#[test]
fn acks() {
    assert_eq!(
        parse_ack(br#"{"rows":3,"shards":[{"shard":0,"first_offset":0,"last_offset":2}],"duplicate":false}"#).unwrap(),
        Ack {
            rows: Some(3),
            duplicate: false
        }
    );
    assert!(
        parse_ack(br#"{"rows":0,"shards":[],"duplicate":true}"#)
            .unwrap()
            .duplicate
    );
    assert_eq!(parse_ack(b"").unwrap(), Ack::default());
    assert!(parse_ack(b"nope").unwrap_err().contains("acknowledgement"));
}

#[test]
fn retries() {
    assert!(is_retryable(Code::Unavailable) && is_retryable(Code::ResourceExhausted));
    assert!(!is_retryable(Code::InvalidArgument) && !is_retryable(Code::DeadlineExceeded));
    let mut s = Status::resource_exhausted("slow down");
    s.metadata_mut()
        .insert(RETRY_AFTER_MS, "750".parse().unwrap());
    let hint = retry_after(&s);
    assert_eq!(hint, Some(Duration::from_millis(750)));
    assert_eq!(retry_delay(3, hint, 0.9), Duration::from_millis(750));
    assert_eq!(retry_delay(0, None, 0.0), Duration::from_millis(100));
    assert_eq!(retry_delay(1, None, 1.0), Duration::from_millis(400));
    assert_eq!(retry_delay(10, None, 1.0), MAX_BACKOFF);
    assert_eq!(retry_after(&Status::unavailable("x")), None);
}

#[test]
fn summary_line() {
    let s = summary(
        1_500_000,
        123_456_789,
        &["logs"],
        3,
        Duration::from_millis(2500),
    );
    assert_eq!(
        s,
        "loaded 1500000 rows (123.5 MB) into logs from 3 files in 2.50 s (600000 rows/s)"
    );
    let s = summary(1, 10, &["a", "b"], 1, Duration::from_secs(1));
    assert_eq!(
        s,
        "loaded 1 row (0.0 MB) into a, b from 1 file in 1.00 s (1 rows/s)"
    );
}

#[tokio::test]
async fn loads_with_one_acknowledged_do_put_per_batch_and_retries_once() {
    use super::super::testing::{Mock, serve};
    let mock = Mock::default();
    mock.fail_once.lock().unwrap().insert(2);
    let (url, server) = serve(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("ts,n\n");
    for i in 0..10 {
        body.push_str(&format!("2024-01-01T00:00:0{i}Z,{i}\n"));
    }
    let path = write_file(&dir, "Events.csv", &body);
    let args = ingest_args(&[
        "--gateway",
        &url,
        "--token",
        "s3cret",
        "--batch-rows",
        "4",
        path.to_str().unwrap(),
    ]);
    run(&args).await.unwrap();

    let puts = mock.puts.lock().unwrap().clone();
    let seq_rows: Vec<_> = puts.iter().map(|p| (p.sequence, p.rows)).collect();
    assert_eq!(seq_rows, [(Some(1), 4), (Some(2), 4), (Some(3), 2)]);
    assert_eq!(
        *mock.attempts.lock().unwrap(),
        4,
        "sequence 2 was sent twice"
    );
    let producer = puts[0].producer.clone().unwrap();
    assert!(uuid::Uuid::parse_str(&producer).is_ok());
    for p in &puts {
        assert_eq!(p.producer.as_deref(), Some(producer.as_str()));
        assert_eq!(p.table, ["events"]);
        assert_eq!(p.authorization.as_deref(), Some("Bearer s3cret"));
    }

    // A rejected batch fails the load with the gateway's code and message.
    let args = ingest_args(&[
        "--gateway",
        &url,
        "--table",
        "reject",
        path.to_str().unwrap(),
    ]);
    let e = run(&args).await.unwrap_err();
    assert!(e.contains("→ reject: InvalidArgument: column `n`"), "{e}");
    assert!(e.contains("0 rows of this file stored"), "{e}");
    server.abort();
}
