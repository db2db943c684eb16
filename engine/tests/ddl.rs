//! DDL that fits real data, through Flight SQL against a real `strata serve` process on the
//! embedded default store: zoned timestamps and binary ids as pyarrow writes them, lossless
//! ingest casts, `ALTER TABLE ... ADD COLUMN / SET`, `TRUNCATE`, `DESCRIBE` / `SHOW TABLES`,
//! `DROP TABLE` and reusing the name, and clear refusals for what cannot change.

mod common;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use common::*;

const NOW_MICROS: i64 = 1_800_000_000_000_000;

/// `n` rows as pyarrow writes them: `ts` as timestamp[us, tz=<zone>] (or zone-less), a
/// 16-byte id, a 32-bit count.
fn rows(zone: Option<&str>, start: i64, n: i64, region: bool) -> RecordBatch {
    let ts =
        TimestampMicrosecondArray::from_iter_values((start..start + n).map(|i| NOW_MICROS + i));
    let ts: ArrayRef = match zone {
        Some(z) => Arc::new(ts.with_timezone(z)),
        None => Arc::new(ts),
    };
    let ids = FixedSizeBinaryArray::try_from_iter((start..start + n).map(|i| {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        id
    }))
    .expect("ids");
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("ts", ts),
        ("id", Arc::new(ids)),
        (
            "host",
            Arc::new(StringArray::from_iter_values(
                (start..start + n).map(|i| format!("h{}", i % 5)),
            )),
        ),
        (
            "n",
            Arc::new(Int32Array::from_iter_values(
                (start..start + n).map(|i| i as i32),
            )),
        ),
    ];
    if region {
        cols.push((
            "region",
            Arc::new(StringArray::from_iter_values(
                (start..start + n).map(|_| "eu"),
            )),
        ));
    }
    RecordBatch::try_from_iter(cols).expect("batch")
}

async fn count(client: &mut Client, sql: &str) -> i64 {
    scalar_i64(
        &query(client, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

type Client = arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_that_fits_real_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Proc::start(
        &["serve", "--data-dir", dir.path().to_str().expect("utf-8")],
        &[],
    );
    let mut c = sql_client(&p.grpc).await;

    query(
        &mut c,
        "CREATE TABLE logs (ts TIMESTAMP(6) WITH TIME ZONE NOT NULL, id BINARY(16), \
         host VARCHAR, n BIGINT) WITH (bloom_columns = 'id')",
    )
    .await
    .expect("create");
    let described = query(&mut c, "DESCRIBE logs").await.expect("describe");
    let text = arrow::util::pretty::pretty_format_batches(&described)
        .expect("format")
        .to_string();
    assert!(
        text.contains("Timestamp(µs, \"UTC\")")
            || text.contains("Timestamp(Microsecond, Some(\"UTC\"))"),
        "{text}"
    );
    assert!(text.contains("Binary"), "{text}");

    // UTC and "+00:00" timestamps, fixed-size ids, 32-bit counts: stored as declared.
    put(&p.grpc, "logs", rows(Some("UTC"), 0, 100, false), None)
        .await
        .expect("UTC rows");
    put(&p.grpc, "logs", rows(Some("+00:00"), 100, 50, false), None)
        .await
        .expect("+00:00 rows");
    // Zone-less values are taken as UTC.
    put(&p.grpc, "logs", rows(None, 150, 50, false), None)
        .await
        .expect("zone-less rows");
    // Another zone into a zoned column: the same instants.
    put(&p.grpc, "logs", rows(Some("+02:00"), 200, 10, false), None)
        .await
        .expect("+02:00 rows");
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 210);
    let b = query(&mut c, "SELECT ts, id FROM logs WHERE n = 205")
        .await
        .expect("lookup");
    let b = b.iter().find(|b| b.num_rows() > 0).expect("a row");
    assert_eq!(
        b.column(0).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let ts = b
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("ts");
    assert_eq!(ts.value(0), NOW_MICROS + 205, "the instant is kept");
    assert_eq!(b.column(1).data_type(), &DataType::Binary);
    // Binary ids are comparable with hex literals.
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM logs WHERE id = X'00000000000000070000000000000000'"
        )
        .await,
        1
    );

    // ALTER TABLE: a new column, options changed later.
    query(&mut c, "ALTER TABLE logs ADD COLUMN region VARCHAR")
        .await
        .expect("add column");
    query(
        &mut c,
        "ALTER TABLE logs ADD COLUMN IF NOT EXISTS region VARCHAR",
    )
    .await
    .expect("add column again, if not exists");
    let e = query(&mut c, "ALTER TABLE logs ADD COLUMN region VARCHAR")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    put(&p.grpc, "logs", rows(Some("UTC"), 300, 20, true), None)
        .await
        .expect("rows with region");
    assert_eq!(count(&mut c, "SELECT count(region) FROM logs").await, 20);
    // A write that brings a new column: queried at once in the same process.
    let with_extra = {
        let b = rows(Some("UTC"), 320, 4, true);
        let schema = b.schema();
        let mut cols: Vec<(&str, ArrayRef)> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .zip(b.columns().iter().cloned())
            .collect();
        cols.push(("extra", Arc::new(Int32Array::from(vec![1, 2, 3, 4]))));
        RecordBatch::try_from_iter(cols).expect("batch")
    };
    put(&p.grpc, "logs", with_extra, None)
        .await
        .expect("rows with a new column");
    assert_eq!(count(&mut c, "SELECT sum(extra) FROM logs").await, 10);
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 234);
    query(
        &mut c,
        "ALTER TABLE logs SET (bloom_columns = 'id, host', retention = '3650d')",
    )
    .await
    .expect("set options");
    for (sql, what) in [
        ("ALTER TABLE logs SET (shard_key = 'host')", "shard_key"),
        ("ALTER TABLE logs SET (bloom_columns = 'nope')", "nope"),
        ("ALTER TABLE logs SET (colour = 'red')", "colour"),
        ("ALTER TABLE logs ADD COLUMN z INT NOT NULL", "nullable"),
    ] {
        let e = query(&mut c, sql).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{sql}: {e}");
        assert!(e.message().contains(what), "{sql}: {e}");
    }
    let e = query(&mut c, "ALTER TABLE nosuch ADD COLUMN z INT")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    query(&mut c, "ALTER TABLE IF EXISTS nosuch ADD COLUMN z INT")
        .await
        .expect("if exists");
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 234);

    // TRUNCATE: every row written before it goes; later rows stay.
    query(&mut c, "TRUNCATE TABLE logs")
        .await
        .expect("truncate");
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 0);
    put(&p.grpc, "logs", rows(Some("UTC"), 400, 7, true), None)
        .await
        .expect("rows after truncate");
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 7);

    // DROP TABLE: gone for readers and writers at once; the name can be used again, and
    // nothing of the dropped table comes back.
    query(&mut c, "DROP TABLE logs").await.expect("drop");
    let e = query(&mut c, "SELECT count(*) FROM logs")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::NotFound | tonic::Code::InvalidArgument
        ),
        "{e}"
    );
    let tables = query(&mut c, "SHOW TABLES").await.expect("show tables");
    let text = arrow::util::pretty::pretty_format_batches(&tables)
        .expect("format")
        .to_string();
    assert!(!text.contains("logs"), "{text}");
    let e = query(&mut c, "DROP TABLE logs").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    query(&mut c, "DROP TABLE IF EXISTS logs")
        .await
        .expect("drop if exists");
    // The first write makes a new table of that name (zone-less, as the batch says).
    put(&p.grpc, "logs", rows(None, 500, 3, false), None)
        .await
        .expect("rows into a new logs");
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 3);
    assert_eq!(count(&mut c, "SELECT min(n) FROM logs").await, 500);
    // And a declared table can take the name again too.
    query(&mut c, "DROP TABLE logs").await.expect("drop again");
    query(
        &mut c,
        "CREATE TABLE logs (ts TIMESTAMP(6) WITH TIME ZONE NOT NULL, n BIGINT)",
    )
    .await
    .expect("create after drop");
    assert_eq!(count(&mut c, "SELECT count(*) FROM logs").await, 0);
}
