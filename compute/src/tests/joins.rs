//! Joins within memory: the small side is the one held, and a join that cannot fit says
//! which setting to raise.

use crate::testing::{Fixture, query, query_err, test_config};
use crate::{ErrorKind, QueryConfig};

/// "The last row per host" written as a join back to an aggregate (the form the issue's
/// user wrote).
const JOIN_BACK: &str = "SELECT l.host, l.ts, l.request_id FROM logs AS l \
     JOIN (SELECT host, max(ts) AS max_ts FROM logs GROUP BY host) AS m \
     ON l.host = m.host AND l.ts = m.max_ts ORDER BY l.host, l.request_id";

fn tight(bytes: usize) -> QueryConfig {
    QueryConfig {
        memory_limit_bytes: bytes,
        node_memory_bytes: bytes,
        ..test_config()
    }
}

/// The aggregate (one row per host) is the side the join holds (DataFusion plans it as a
/// semi join with the aggregate as build side and a dynamic filter on the probe), so the
/// query runs in a budget below the table's size, with the same answer.
#[tokio::test]
async fn a_join_back_to_an_aggregate_holds_the_aggregate() {
    let f = Fixture::new().await;
    let expected = query(&f.engine(test_config()).await, JOIN_BACK).await;
    let hosts: std::collections::BTreeSet<&str> = f.rows.iter().map(|r| r.host.as_str()).collect();
    assert!(expected.len() >= hosts.len(), "at least one row per host");
    // The budget is below the size of the table's rows in memory: holding the probe side
    // would not fit. (Four merged 8k-row batches of the sorted output must fit in it.)
    let budget = 3 << 19;
    let all = f
        .engine(test_config())
        .await
        .execute("SELECT * FROM logs", &Default::default())
        .await
        .expect("select *")
        .collect()
        .await
        .expect("collect");
    let table_bytes: usize = all.iter().map(|b| b.get_array_memory_size()).sum();
    assert!(budget * 2 < table_bytes, "{budget} vs {table_bytes}");
    let small = f.engine(tight(budget)).await;
    assert_eq!(query(&small, JOIN_BACK).await, expected);
}

/// The join back to an aggregate of the same table holds the aggregate whole, so the
/// aggregate's bounds (the oldest of the newest rows per host) skip segments of the scan of
/// the rows; DataFusion alone holds the raw side or partitions both (and prunes nothing).
#[tokio::test]
async fn a_join_back_to_an_aggregate_prunes_the_rows_it_joins() {
    let f = Fixture::new().await;
    let engine = f.engine(test_config()).await;
    let text = format!(
        "{:?}",
        query(&engine, &format!("EXPLAIN ANALYZE {JOIN_BACK}")).await
    );
    assert!(text.contains("mode=CollectLeft"), "{text}");
    let (total, matched) = super::dynamic_filter_file_pruning(&text);
    assert!(
        total > 1 && matched < total,
        "no segment skipped: {total} → {matched}"
    );
}

/// A join that cannot fit fails with RESOURCE_EXHAUSTED naming the setting to raise, never
/// INTERNAL.
#[tokio::test]
async fn a_join_that_cannot_fit_names_the_setting() {
    let f = Fixture::new().await;
    let engine = f.engine(tight(256 << 10)).await;
    let e = query_err(
        &engine,
        "SELECT count(*) FROM logs a JOIN logs b ON a.trace_id = b.trace_id",
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("query.memory_limit_bytes") || text.contains("query.node_memory_bytes"),
        "{text}"
    );
}

/// The last row per key over as many keys as rows: the join-back form holds one row per key
/// in the join, which cannot spill, so a budget below that fails with RESOURCE_EXHAUSTED
/// naming the setting (never INTERNAL), and a budget that fits answers like DataFusion's
/// window.
#[tokio::test]
async fn a_last_row_over_many_keys_fits_or_names_the_setting() {
    let f = Fixture::new().await;
    let sql = "SELECT request_id, ts FROM (SELECT request_id, ts, row_number() OVER \
               (PARTITION BY request_id ORDER BY ts DESC) AS rn FROM logs) WHERE rn = 1 \
               ORDER BY request_id";
    let e = query_err(&f.engine(tight(64 << 10)).await, sql).await;
    assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("query.memory_limit_bytes") || text.contains("query.node_memory_bytes"),
        "{text}"
    );
    let got = query(&f.engine(test_config()).await, sql).await;
    let ids: std::collections::BTreeSet<_> = f.rows.iter().map(|r| r.request_id).collect();
    assert_eq!(got.len(), ids.len(), "one row per request id");
}
