//! Storage conformance suite: one set of cases, run against every backend Strata supports.
//!
//! Each case is an async function over a [`TestStore`]; the `conformance!` macro at the
//! bottom instantiates every case three times, as `memory::<case>`, `local::<case>` (a
//! temporary folder) and `s3::<case>` (the S3 server named by `STRATA_TEST_S3_URL`, each test
//! under its own uuid prefix). Stores are opened the way Strata opens them:
//! [`open_store`] from a URL, wrapped in the production decorator stack
//! ([`decorators::layered`]), and checked with [`verify_conditional_writes`].
//!
//! The S3 variants never skip: without `STRATA_TEST_S3_URL` they fail, saying how to run them:
//!
//! ```sh
//! ./minio/with-s3.sh cargo test -p strata-storage --test conformance
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use strata_storage::decorators::{self, FaultConfig, FaultStore, LayerOptions};
use strata_storage::gc::{self, GcOptions};
use strata_storage::segment::{self, EncodedSegment, SegmentOptions};
use strata_storage::wal::{self, WalHeader};
use strata_storage::{
    Catalog, Error, OFFSET_COLUMN, S3Options, SegmentMeta, StoreKind, StoreUrl, TableDef,
    TableManifest, open_store, paths, verify_conditional_writes,
};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const HOW_TO_RUN_S3: &str = "run the S3 tests via `./minio/with-s3.sh cargo test -p strata-storage --test conformance` \
     (it starts a local S3 server and exports STRATA_TEST_S3_URL and the AWS_* variables)";

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Local,
    S3,
}

/// A freshly opened, empty store of one backend.
struct TestStore {
    backend: Backend,
    url: StoreUrl,
    /// The backend as `open_store` returned it, without decorators.
    raw: Arc<dyn ObjectStore>,
    /// The production stack over `raw`: what the cases use.
    store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

/// `STRATA_TEST_S3_URL` without a trailing slash; panics (never skips) when it is unset.
fn s3_base_url() -> String {
    match std::env::var("STRATA_TEST_S3_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_string(),
        _ => panic!("STRATA_TEST_S3_URL is not set: {HOW_TO_RUN_S3}"),
    }
}

/// The production decorator stack over `inner`, with its own metrics registry.
fn layer(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let opts = LayerOptions {
        timeout: Duration::from_secs(10),
        ..LayerOptions::default()
    };
    decorators::layered(inner, &opts, &prometheus::Registry::new())
        .expect("a fresh registry accepts the metrics")
        .0
}

impl Backend {
    async fn open(self) -> TestStore {
        let (url, dir) = match self {
            Backend::Memory => ("memory://".to_string(), None),
            Backend::Local => {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let url = format!("file://{}", dir.path().join("bucket").display());
                (url, Some(dir))
            }
            Backend::S3 => (
                format!("{}/{}", s3_base_url(), uuid::Uuid::new_v4().simple()),
                None,
            ),
        };
        let url = StoreUrl::parse(&url).unwrap_or_else(|e| panic!("cannot parse {url}: {e}"));
        let raw = open_store(&url, &S3Options::from_env())
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}; {HOW_TO_RUN_S3}"));
        let store = layer(Arc::clone(&raw));
        verify_conditional_writes(store.as_ref(), &url)
            .await
            .unwrap_or_else(|e| panic!("{url} failed the conditional-write probe: {e}"));
        TestStore {
            backend: self,
            url,
            raw,
            store,
            _dir: dir,
        }
    }
}

impl TestStore {
    fn catalog(&self) -> Catalog {
        Catalog::new(Arc::clone(&self.store))
    }

    /// Removes what a passing case left under its S3 prefix (memory and folders go by themselves).
    async fn cleanup(&self) -> TestResult {
        if self.backend == Backend::S3 {
            let all = self.store.list(None).map_ok(|m| m.location).boxed();
            let _: Vec<Path> = self.store.delete_stream(all).try_collect().await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn logs_def(name: &str, num_shards: u32) -> TableDef {
    TableDef {
        name: name.into(),
        schema: Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("id", DataType::Int64, false),
            Field::new("msg", DataType::Utf8, true),
        ]),
        time_column: Some("ts".into()),
        shard_key: None,
        num_shards,
        retention_secs: None,
        bloom_columns: vec!["id".into()],
        created_at_ms: 0,
    }
}

/// The table schema plus the offset column, as segments and WAL entries carry it.
fn stored_schema(def: &TableDef) -> SchemaRef {
    let mut fields: Vec<_> = def.schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(OFFSET_COLUMN, DataType::UInt64, false)));
    Arc::new(Schema::new(fields))
}

/// `rows` rows starting at log offset `first_offset`, timestamps out of order.
fn rows(def: &TableDef, first_offset: u64, rows: usize) -> RecordBatch {
    let base = 1_700_000_000_000_000i64;
    let ts: Vec<i64> = (0..rows)
        .map(|i| base + ((i * 7919) % rows.max(1)) as i64 * 1_000)
        .collect();
    let ids: Vec<i64> = (0..rows as i64).map(|i| first_offset as i64 + i).collect();
    let msgs: Vec<Option<String>> = (0..rows)
        .map(|i| (i % 5 != 0).then(|| format!("message {i}")))
        .collect();
    let offsets: Vec<u64> = (0..rows as u64).map(|i| first_offset + i).collect();
    RecordBatch::try_new(
        stored_schema(def),
        vec![
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(msgs)),
            Arc::new(UInt64Array::from(offsets)),
        ],
    )
    .expect("a valid batch")
}

fn create() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

/// Encodes a segment and uploads it create-only, as a flush does before its commit.
async fn upload_segment(
    store: &dyn ObjectStore,
    def: &TableDef,
    shard: u32,
    first_offset: u64,
    n: usize,
) -> Result<(Path, EncodedSegment), Box<dyn std::error::Error + Send + Sync>> {
    let enc = segment::encode_segment(
        def,
        &[rows(def, first_offset, n)],
        &SegmentOptions::default(),
    )?;
    let path = paths::new_segment(&def.name, shard, enc.min_ts);
    store
        .put_opts(&path, PutPayload::from(enc.bytes.clone()), create())
        .await?;
    Ok((path, enc))
}

fn segment_meta(path: &Path, shard: u32, enc: &EncodedSegment) -> SegmentMeta {
    SegmentMeta {
        path: path.to_string(),
        shard,
        rows: enc.rows,
        bytes: enc.bytes.len() as u64,
        min_ts: enc.min_ts,
        max_ts: enc.max_ts,
        min_offset: enc.min_offset,
        max_offset: enc.max_offset,
        columns: enc.columns.clone(),
        level: 0,
        deletes_applied: 0,
        created_at_ms: chrono_now_ms(),
    }
}

/// A manifest entry for a segment that need not exist (commit tests only count entries).
fn fake_segment(table: &str, shard: u32, name: &str, offset: u64) -> SegmentMeta {
    SegmentMeta {
        path: format!("tables/{table}/seg/{shard:04}/{name}.parquet"),
        shard,
        rows: 1,
        bytes: 1,
        min_ts: None,
        max_ts: None,
        min_offset: offset,
        max_offset: offset,
        columns: Default::default(),
        level: 0,
        deletes_applied: 0,
        created_at_ms: 0,
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn segment_paths(m: &TableManifest) -> Vec<String> {
    m.segments.iter().map(|s| s.path.clone()).collect()
}

async fn listed(
    stream: futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
) -> object_store::Result<Vec<String>> {
    let mut out: Vec<String> = stream
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    out.sort();
    Ok(out)
}

fn assert_one_line(msg: &str) {
    assert!(!msg.trim().is_empty(), "empty error message");
    assert!(
        !msg.contains('\n'),
        "error message spans several lines:\n{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Case 1: plain object operations
// ---------------------------------------------------------------------------------------------

async fn object_operations(t: &TestStore) -> TestResult {
    let s = t.store.as_ref();
    let k = |p: &str| Path::from(format!("kv/{p}"));
    let body = Bytes::from_static(b"0123456789abcdef");
    s.put(&k("a/1"), PutPayload::from(body.clone())).await?;
    s.put(&k("a/2"), "two".into()).await?;
    s.put(&k("a/b/3"), "three".into()).await?;
    s.put(
        &k("ab/x"),
        "a sibling that shares the string prefix `a`".into(),
    )
    .await?;
    s.put(&k("c"), "c".into()).await?;

    // Whole, ranged, suffix, offset and multi-range reads.
    let whole = s.get(&k("a/1")).await?;
    assert_eq!(
        whole.meta.location,
        k("a/1"),
        "a read reports the location it was asked for"
    );
    assert_eq!(whole.meta.size, 16);
    assert_eq!(whole.bytes().await?, body);
    assert_eq!(
        s.get_range(&k("a/1"), 2..5).await?,
        Bytes::from_static(b"234")
    );
    let suffix = s
        .get_opts(
            &k("a/1"),
            GetOptions::new().with_range(Some(GetRange::Suffix(4))),
        )
        .await?;
    assert_eq!(suffix.range, 12..16, "suffix range reported");
    assert_eq!(suffix.bytes().await?, Bytes::from_static(b"cdef"));
    let tail = s
        .get_opts(
            &k("a/1"),
            GetOptions::new().with_range(Some(GetRange::Offset(10))),
        )
        .await?;
    assert_eq!(tail.bytes().await?, Bytes::from_static(b"abcdef"));
    let parts = s.get_ranges(&k("a/1"), &[0..2, 14..16]).await?;
    assert_eq!(
        parts,
        vec![Bytes::from_static(b"01"), Bytes::from_static(b"ef")]
    );

    // Head.
    let head = s.head(&k("a/1")).await?;
    assert_eq!(head.location, k("a/1"));
    assert_eq!(head.size, 16);

    // Overwrite with a plain put.
    s.put(&k("c"), "c2".into()).await?;
    assert_eq!(
        s.get(&k("c")).await?.bytes().await?,
        Bytes::from_static(b"c2")
    );
    assert_eq!(s.head(&k("c")).await?.size, 2);

    // List under a prefix: path segments, not string prefixes (`kv/ab` is not under `kv/a`).
    assert_eq!(
        listed(s.list(Some(&k("a")))).await?,
        ["kv/a/1", "kv/a/2", "kv/a/b/3"]
    );
    assert_eq!(
        listed(s.list(Some(&Path::from("kv")))).await?,
        ["kv/a/1", "kv/a/2", "kv/a/b/3", "kv/ab/x", "kv/c"]
    );
    assert!(listed(s.list(Some(&k("nothing")))).await?.is_empty());

    // List with a delimiter: direct children and common prefixes.
    let l = s.list_with_delimiter(Some(&k("a"))).await?;
    let mut objects: Vec<String> = l.objects.iter().map(|m| m.location.to_string()).collect();
    objects.sort();
    let mut prefixes: Vec<String> = l.common_prefixes.iter().map(ToString::to_string).collect();
    prefixes.sort();
    assert_eq!(objects, ["kv/a/1", "kv/a/2"]);
    assert_eq!(prefixes, ["kv/a/b"]);
    let l = s.list_with_delimiter(Some(&Path::from("kv"))).await?;
    let objects: Vec<String> = l.objects.iter().map(|m| m.location.to_string()).collect();
    let mut prefixes: Vec<String> = l.common_prefixes.iter().map(ToString::to_string).collect();
    prefixes.sort();
    assert_eq!(objects, ["kv/c"]);
    assert_eq!(prefixes, ["kv/a", "kv/ab"]);

    // List with an offset: only keys after it.
    assert_eq!(
        listed(s.list_with_offset(Some(&k("a")), &k("a/1"))).await?,
        ["kv/a/2", "kv/a/b/3"]
    );
    assert_eq!(
        listed(s.list_with_offset(Some(&k("a")), &k("a/2"))).await?,
        ["kv/a/b/3"]
    );
    assert!(
        listed(s.list_with_offset(Some(&k("a")), &k("a/b/3")))
            .await?
            .is_empty()
    );

    // Delete.
    s.delete(&k("a/2")).await?;
    assert!(matches!(
        s.get(&k("a/2")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(matches!(
        s.head(&k("a/2")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(listed(s.list(Some(&k("a")))).await?, ["kv/a/1", "kv/a/b/3"]);
    assert_eq!(
        s.get(&k("a/1")).await?.bytes().await?,
        body,
        "a neighbour survives the delete"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 2: conditional writes
// ---------------------------------------------------------------------------------------------

async fn conditional_writes(t: &TestStore) -> TestResult {
    let s = t.store.as_ref();
    let p = Path::from("cond/once");
    let first = s.put_opts(&p, "first".into(), create()).await?;
    match s.put_opts(&p, "second".into(), create()).await {
        Err(e) if is_conflict(&e) => {}
        other => panic!(
            "a second create-only put of {p} must fail with AlreadyExists/Precondition, got {other:?}"
        ),
    }
    assert_eq!(
        s.get(&p).await?.bytes().await?,
        Bytes::from_static(b"first"),
        "the loser overwrote"
    );

    // Racing creators: exactly one wins, and its payload is what is stored.
    let race = Path::from("cond/race");
    let attempts = (0..16).map(|i| {
        let store = Arc::clone(&t.store);
        let race = race.clone();
        tokio::spawn(async move {
            store
                .put_opts(&race, format!("writer {i}").into(), create())
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r? {
            Ok(_) => winners.push(i),
            Err(e) if is_conflict(&e) => {}
            Err(e) => panic!("racing creator {i} failed with an unexpected error: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing creator must win, winners: {winners:?}"
    );
    let stored = s.get(&race).await?.bytes().await?;
    assert_eq!(stored, Bytes::from(format!("writer {}", winners[0])));

    // Compare-and-swap (If-Match), where the backend offers it. The local folder does not,
    // and Strata does not need it there.
    if t.backend != Backend::Local {
        let stale = UpdateVersion {
            e_tag: Some("\"00000000000000000000000000000000\"".into()),
            version: None,
        };
        match s
            .put_opts(&p, "stale".into(), PutOptions::from(PutMode::Update(stale)))
            .await
        {
            Err(object_store::Error::Precondition { .. }) => {}
            other => panic!(
                "an If-Match put with a stale etag must fail with Precondition, got {other:?}"
            ),
        }
        assert_eq!(
            s.get(&p).await?.bytes().await?,
            Bytes::from_static(b"first")
        );
        let current = UpdateVersion::from(first.clone());
        s.put_opts(
            &p,
            "third".into(),
            PutOptions::from(PutMode::Update(current)),
        )
        .await?;
        assert_eq!(
            s.get(&p).await?.bytes().await?,
            Bytes::from_static(b"third")
        );
        // The first etag is stale now.
        match s
            .put_opts(
                &p,
                "again".into(),
                PutOptions::from(PutMode::Update(UpdateVersion::from(first))),
            )
            .await
        {
            Err(object_store::Error::Precondition { .. }) => {}
            other => panic!(
                "an If-Match put with a superseded etag must fail with Precondition, got {other:?}"
            ),
        }
        assert_eq!(
            s.get(&p).await?.bytes().await?,
            Bytes::from_static(b"third")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 3: manifest create / commit / load
// ---------------------------------------------------------------------------------------------

async fn manifest_lifecycle(t: &TestStore) -> TestResult {
    let (a, b) = (t.catalog(), t.catalog());
    assert!(matches!(a.load("logs").await, Err(Error::TableNotFound(_))));

    // Two creators race; one creates, the other is told it exists and gets the same table.
    let (ra, rb) = tokio::join!(
        a.create_table(logs_def("logs", 2)),
        b.create_table(logs_def("logs", 2))
    );
    let ((ma, created_a), (mb, created_b)) = (ra?, rb?);
    assert!(
        created_a ^ created_b,
        "exactly one create must win: a={created_a} b={created_b}"
    );
    assert_eq!(ma.table, mb.table, "both creators see the same definition");
    assert_eq!((ma.version, mb.version), (1, 1));
    assert_eq!(
        ma.commit_id, mb.commit_id,
        "both see the winner's version 1"
    );
    assert!(ma.table.created_at_ms > 0);
    let (again, created) = t.catalog().create_table(logs_def("logs", 2)).await?;
    assert!(!created, "creating an existing table reports created=false");
    assert_eq!(again.table, ma.table);
    assert_eq!(a.list_tables().await?, ["logs"]);

    // Commits add segments, one version each.
    let (path, enc) = upload_segment(t.store.as_ref(), &ma.table, 0, 0, 100).await?;
    let seg = segment_meta(&path, 0, &enc);
    let m2 = a
        .commit("logs", |m| {
            m.segments.push(seg.clone());
            m.shard_mut(0)?.flushed_offset = 100;
            Ok(())
        })
        .await?;
    assert_eq!(m2.version, 2);
    assert_eq!(m2.segments, vec![seg.clone()]);

    let fresh = t.catalog().load("logs").await?;
    assert_eq!(fresh.version, 2, "a new catalog sees the latest version");
    assert_eq!(fresh.commit_id, m2.commit_id);
    assert_eq!(fresh.segments, vec![seg.clone()]);
    assert_eq!(fresh.shard(0)?.flushed_offset, 100);
    assert_eq!(fresh.total_rows(), 100);

    // `b` last saw version 1 (cached); it must still see and build on the newest version.
    let seen_by_b = b.load("logs").await?;
    assert_eq!(
        seen_by_b.version, 2,
        "a catalog with a stale cache sees the latest version"
    );
    let mut version = seen_by_b.version;
    for i in 0..3u64 {
        let extra = fake_segment("logs", 1, &format!("extra-{i}"), i);
        let m = b
            .commit("logs", |m| {
                m.segments.push(extra.clone());
                Ok(())
            })
            .await?;
        assert_eq!(m.version, version + 1, "versions increase by exactly 1");
        version = m.version;
    }
    assert_eq!(a.load("logs").await?.version, 5, "`a` sees `b`'s commits");
    let fresh = t.catalog().load("logs").await?;
    assert_eq!(fresh.version, 5);
    assert_eq!(fresh.segments.len(), 4);
    assert_eq!(
        fresh.segments[0], seg,
        "earlier segments are kept, in order"
    );
    assert_eq!(
        a.list_versions("logs").await?,
        (1..=5).collect::<Vec<u64>>()
    );
    // Every version is a complete, loadable state.
    for v in 1..=5u64 {
        let m = a.load_version("logs", v).await?;
        assert_eq!(m.version, v);
        assert_eq!(m.segments.len(), v.saturating_sub(1) as usize);
    }
    // The segment a commit names is readable and decodes to its rows.
    let bytes = t.store.get(&path).await?.bytes().await?;
    let (_, batches) = segment::decode_segment(bytes)?;
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        100
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 4: concurrent committers lose nothing
// ---------------------------------------------------------------------------------------------

const WRITERS: usize = 16;
const COMMITS_PER_WRITER: usize = 5;

async fn concurrent_committers(t: &TestStore) -> TestResult {
    t.catalog().create_table(logs_def("busy", 4)).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let catalog = Catalog::new(Arc::clone(&t.store));
            tokio::spawn(async move {
                let mut versions = Vec::new();
                for c in 0..COMMITS_PER_WRITER {
                    let seg = fake_segment(
                        "busy",
                        (w % 4) as u32,
                        &format!("w{w:02}-c{c}"),
                        (w * 100 + c) as u64,
                    );
                    let m = catalog
                        .commit("busy", |m| {
                            m.segments.push(seg.clone());
                            Ok(())
                        })
                        .await?;
                    assert!(
                        segment_paths(&m).contains(&seg.path),
                        "a commit's result holds its change"
                    );
                    versions.push(m.version);
                }
                Ok::<_, Error>(versions)
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in futures::future::join_all(tasks).await {
        versions.extend(task??);
    }
    let elapsed = started.elapsed();

    // Every commit got its own version.
    versions.sort_unstable();
    let n = (WRITERS * COMMITS_PER_WRITER) as u64;
    assert_eq!(
        versions,
        (2..=n + 1).collect::<Vec<u64>>(),
        "each commit has a distinct version"
    );

    let m = t.catalog().load("busy").await?;
    assert_eq!(m.version, 1 + n, "version = 1 (create) + {n} commits");
    let got: BTreeSet<String> = segment_paths(&m).into_iter().collect();
    let want: BTreeSet<String> = (0..WRITERS)
        .flat_map(|w| (0..COMMITS_PER_WRITER).map(move |c| (w, c)))
        .map(|(w, c)| fake_segment("busy", (w % 4) as u32, &format!("w{w:02}-c{c}"), 0).path)
        .collect();
    assert_eq!(m.segments.len(), want.len(), "no duplicated segments");
    assert_eq!(got, want, "zero lost commits");
    assert_eq!(
        t.catalog().list_versions("busy").await?,
        (1..=n + 1).collect::<Vec<u64>>()
    );
    // Each writer's commits appear in its own order.
    for w in 0..WRITERS {
        let mine: Vec<&str> = m
            .segments
            .iter()
            .map(|s| s.path.as_str())
            .filter(|p| p.contains(&format!("/w{w:02}-")))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort_unstable();
        assert_eq!(mine, sorted, "writer {w}'s commits are applied in order");
    }
    eprintln!(
        "{:?}: {n} commits by {WRITERS} writers in {elapsed:?}",
        t.backend
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 5: fencing
// ---------------------------------------------------------------------------------------------

async fn fencing(t: &TestStore) -> TestResult {
    let (a, b) = (t.catalog(), t.catalog());
    a.create_table(logs_def("fenced", 2)).await?;
    let (e1, _) = a.claim_shard("fenced", 0).await?;
    let (e2, mb) = b.claim_shard("fenced", 0).await?;
    assert!(e2 > e1, "a later claim gets a larger epoch: {e1} then {e2}");
    assert_eq!(
        mb.shard(1)?.epoch,
        0,
        "claiming shard 0 leaves shard 1 alone"
    );

    let stale = fake_segment("fenced", 0, "from-a", 1);
    let err = a
        .commit("fenced", |m| {
            m.check_epoch(0, e1)?;
            m.segments.push(stale.clone());
            Ok(())
        })
        .await
        .expect_err("the superseded writer must be fenced");
    match &err {
        Error::Fenced {
            table,
            shard,
            epoch,
            current,
        } => {
            assert_eq!(
                (table.as_str(), *shard, *epoch, *current),
                ("fenced", 0, e1, e2)
            );
        }
        other => panic!("expected Error::Fenced, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("epoch {e1}")) && msg.contains(&format!("epoch {e2}")),
        "{msg}"
    );
    assert_one_line(&msg);
    assert!(!err.is_transient(), "fencing is final, not retried");

    let fresh = b
        .commit("fenced", |m| {
            m.check_epoch(0, e2)?;
            m.segments.push(fake_segment("fenced", 0, "from-b", 2));
            Ok(())
        })
        .await?;
    let m = t.catalog().load("fenced").await?;
    assert_eq!(m.version, fresh.version);
    assert_eq!(
        segment_paths(&m),
        [fake_segment("fenced", 0, "from-b", 2).path],
        "only B's change landed"
    );
    assert_eq!(m.shard(0)?.epoch, e2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 6: crash between segment upload and commit; GC
// ---------------------------------------------------------------------------------------------

async fn crash_before_commit_and_gc(t: &TestStore) -> TestResult {
    let catalog = t.catalog();
    let (m, _) = catalog.create_table(logs_def("crashy", 1)).await?;
    let def = m.table.clone();

    // A flush that completes.
    let (committed, enc) = upload_segment(t.store.as_ref(), &def, 0, 0, 50).await?;
    let meta = segment_meta(&committed, 0, &enc);
    catalog
        .commit("crashy", |m| {
            m.segments.push(meta.clone());
            Ok(())
        })
        .await?;
    // A flush that crashes after its upload, before its commit.
    let (orphan, enc) = upload_segment(t.store.as_ref(), &def, 0, 50, 80).await?;
    let orphan_size = enc.bytes.len() as u64;
    assert!(
        t.store.head(&orphan).await.is_ok(),
        "the orphan was uploaded"
    );

    let fresh = t.catalog();
    let m = fresh.load("crashy").await?;
    assert_eq!(
        segment_paths(&m),
        [committed.to_string()],
        "the uncommitted segment is invisible"
    );

    // Dry run, no minimum age: reported, not deleted.
    let dry = GcOptions {
        min_age: Duration::ZERO,
        dry_run: true,
        ..GcOptions::default()
    };
    let r = gc::collect_table(&fresh, "crashy", &dry).await?;
    assert_eq!(
        r.orphan_segments,
        std::slice::from_ref(&orphan),
        "the orphan and only it is reported"
    );
    assert_eq!((r.deleted, r.bytes_reclaimed, r.too_young), (0, 0, 0));
    assert!(r.flushed_wal.is_empty() && r.old_manifests.is_empty());
    assert!(
        t.store.head(&orphan).await.is_ok(),
        "a dry run deletes nothing"
    );

    // A young orphan may be a flush in flight: kept.
    let young = GcOptions {
        min_age: Duration::from_secs(3600),
        dry_run: false,
        ..GcOptions::default()
    };
    let r = gc::collect_table(&fresh, "crashy", &young).await?;
    assert!(r.orphan_segments.is_empty(), "{:?}", r.orphan_segments);
    assert_eq!((r.too_young, r.deleted, r.bytes_reclaimed), (1, 0, 0));
    assert!(
        t.store.head(&orphan).await.is_ok(),
        "a too-young orphan is kept"
    );

    // For real.
    let now = GcOptions {
        min_age: Duration::ZERO,
        dry_run: false,
        ..GcOptions::default()
    };
    let r = gc::collect_table(&fresh, "crashy", &now).await?;
    assert_eq!(r.orphan_segments, std::slice::from_ref(&orphan));
    assert_eq!(r.deleted, 1);
    assert_eq!(r.bytes_reclaimed, orphan_size);
    assert!(r.bytes_reclaimed > 0);
    assert!(matches!(
        t.store.head(&orphan).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // The committed segment and the manifests are untouched.
    let bytes = t.store.get(&committed).await?.bytes().await?;
    assert_eq!(bytes.len() as u64, meta.bytes);
    let (_, batches) = segment::decode_segment(bytes)?;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 50);
    assert_eq!(fresh.list_versions("crashy").await?, [1, 2]);
    assert_eq!(t.catalog().load("crashy").await?.segments, vec![meta]);

    // A second pass finds nothing.
    let r = gc::collect_table(&fresh, "crashy", &now).await?;
    assert!(r.orphan_segments.is_empty());
    assert_eq!((r.deleted, r.too_young), (0, 0));

    // Manifest versions outside the retained window go too; the table stays loadable.
    let v1 = paths::manifest_version("crashy", 1);
    let v1_size = t.store.head(&v1).await?.size;
    let keep_one = GcOptions {
        keep_versions: 1,
        ..now
    };
    let r = gc::collect_table(&fresh, "crashy", &keep_one).await?;
    assert_eq!(r.old_manifests, std::slice::from_ref(&v1));
    assert!(
        r.orphan_segments.is_empty(),
        "the latest version still references {committed}"
    );
    assert_eq!((r.deleted, r.bytes_reclaimed), (1, v1_size));
    assert!(
        matches!(
            t.store.head(&v1).await,
            Err(object_store::Error::NotFound { .. })
        ),
        "manifest version 1 was reported deleted but is still there"
    );
    assert_eq!(fresh.list_versions("crashy").await?, [2]);
    let m = t.catalog().load("crashy").await?;
    assert_eq!(
        (m.version, segment_paths(&m)),
        (2, vec![committed.to_string()])
    );
    assert!(t.store.head(&committed).await.is_ok());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 7: a commit whose response is lost
// ---------------------------------------------------------------------------------------------

async fn lost_commit_response(t: &TestStore) -> TestResult {
    // Fault above the production stack: the catalog itself gets the error after the upload.
    let outer = Arc::new(FaultStore::new(
        Arc::clone(&t.store),
        FaultConfig::default(),
    ));
    lost_commit_via(
        t,
        "lost_outer",
        &outer,
        Arc::clone(&outer) as Arc<dyn ObjectStore>,
    )
    .await?;
    // Fault below the production stack: the retry layer retries the create-only put and
    // meets its own first attempt.
    let inner = Arc::new(FaultStore::new(Arc::clone(&t.raw), FaultConfig::default()));
    let stack = layer(Arc::clone(&inner) as Arc<dyn ObjectStore>);
    lost_commit_via(t, "lost_inner", &inner, stack).await
}

async fn lost_commit_via(
    t: &TestStore,
    table: &str,
    fault: &FaultStore,
    store: Arc<dyn ObjectStore>,
) -> TestResult {
    let catalog = Catalog::new(store);

    // A create whose response is lost still reports that it created the table.
    fault.fail_next_puts_after_upload(1);
    let (m, created) = catalog.create_table(logs_def(table, 1)).await?;
    assert_eq!(
        fault.counts().failed_after_upload,
        1,
        "the fault was injected"
    );
    assert!(
        created,
        "{table}: a create whose response was lost is still ours"
    );
    assert_eq!(m.version, 1);

    let seg = fake_segment(table, 0, "once", 7);
    let mut applications = 0;
    fault.fail_next_puts_after_upload(1);
    let m = catalog
        .commit(table, |m| {
            applications += 1;
            m.segments.push(seg.clone());
            Ok(())
        })
        .await?;
    assert_eq!(
        fault.counts().failed_after_upload,
        2,
        "the fault was injected"
    );
    assert_eq!(
        applications, 1,
        "{table}: the commit was recognised as ours, not retried"
    );
    assert_eq!(m.version, 2);

    let fresh = t.catalog().load(table).await?;
    assert_eq!(fresh.version, 2);
    assert_eq!(
        fresh.commit_id, m.commit_id,
        "the stored version is this commit"
    );
    assert_eq!(
        segment_paths(&fresh),
        std::slice::from_ref(&seg.path),
        "the change is in the manifest exactly once"
    );
    assert_eq!(
        t.catalog().list_versions(table).await?,
        [1, 2],
        "no second version was written"
    );

    // The next commit carries on from there.
    let m = catalog
        .commit(table, |m| {
            m.segments.push(fake_segment(table, 0, "next", 8));
            Ok(())
        })
        .await?;
    assert_eq!(m.version, 3);
    assert_eq!(m.segments.len(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 8: WAL listing
// ---------------------------------------------------------------------------------------------

async fn wal_listing(t: &TestStore) -> TestResult {
    let def = logs_def("walt", 2);
    let schema = stored_schema(&def);
    let put_entry = async |shard: u32, seq: u64| -> TestResult {
        let header = WalHeader {
            attempt: 0,
            epoch: 1,
            writer: "w".into(),
            seq,
            first_offset: seq * 10,
            rows: 10,
            producers: Default::default(),
        };
        let bytes = wal::encode(&header, &schema, &[rows(&def, seq * 10, 10)])?;
        t.store
            .put_opts(
                &paths::wal_entry("walt", shard, seq),
                bytes.into(),
                create(),
            )
            .await?;
        Ok(())
    };
    for seq in 0..5 {
        put_entry(0, seq).await?;
    }
    // Neighbours that must not show up: another shard, and a shard whose number shares a
    // string prefix.
    put_entry(1, 3).await?;
    put_entry(10, 4).await?;
    // WAL entries are create-only too.
    match t
        .store
        .put_opts(&paths::wal_entry("walt", 0, 2), "x".into(), create())
        .await
    {
        Err(e) if is_conflict(&e) => {}
        other => panic!("rewriting WAL entry 2 must fail, got {other:?}"),
    }

    let seqs =
        |v: Vec<(u64, object_store::ObjectMeta)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(
        seqs(wal::list(t.store.as_ref(), "walt", 0, 3).await?),
        [3, 4]
    );
    assert_eq!(
        seqs(wal::list(t.store.as_ref(), "walt", 0, 0).await?),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        seqs(wal::list(t.store.as_ref(), "walt", 0, 1).await?),
        [1, 2, 3, 4]
    );
    assert_eq!(seqs(wal::list(t.store.as_ref(), "walt", 0, 4).await?), [4]);
    assert!(wal::list(t.store.as_ref(), "walt", 0, 5).await?.is_empty());
    assert_eq!(seqs(wal::list(t.store.as_ref(), "walt", 1, 0).await?), [3]);
    assert!(wal::list(t.store.as_ref(), "walt", 2, 0).await?.is_empty());

    // The listed objects are the entries, intact.
    let listed = wal::list(t.store.as_ref(), "walt", 0, 3).await?;
    for (seq, meta) in listed {
        assert_eq!(meta.location, paths::wal_entry("walt", 0, seq));
        let entry = wal::decode(&t.store.get(&meta.location).await?.bytes().await?)?;
        assert_eq!(entry.header.seq, seq);
        assert_eq!(entry.header.first_offset, seq * 10);
        assert_eq!(
            entry
                .batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            10
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 9: startup errors are one clear line
// ---------------------------------------------------------------------------------------------

async fn startup_errors(t: &TestStore) -> TestResult {
    let err = StoreUrl::parse("ftp://x").expect_err("ftp is not a store");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let msg = err.to_string();
    assert_one_line(&msg);
    for needle in ["ftp", "file://", "s3://", "memory://"] {
        assert!(msg.contains(needle), "`{msg}` should mention {needle}");
    }

    if t.backend != Backend::S3 {
        return Ok(());
    }
    let StoreUrl::S3 { bucket, .. } = &t.url else {
        panic!("an S3 backend has an S3 URL");
    };
    assert_eq!(t.url.kind(), StoreKind::S3);

    // Nothing listens on port 1.
    let endpoint = "http://127.0.0.1:1";
    let unreachable = S3Options {
        endpoint: Some(endpoint.into()),
        ..S3Options::from_env()
    };
    let started = Instant::now();
    let err = open_store(&t.url, &unreachable)
        .await
        .expect_err("an unreachable endpoint must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Unavailable(_)),
        "expected Unavailable, got {err:?}"
    );
    assert!(msg.contains(endpoint), "`{msg}` should name the endpoint");
    assert_one_line(&msg);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // Without bucket creation the first request is the conditional-write probe.
    let no_create = S3Options {
        create_bucket: false,
        ..unreachable
    };
    let store = layer(open_store(&t.url, &no_create).await?);
    let err = verify_conditional_writes(store.as_ref(), &t.url)
        .await
        .expect_err("the probe must fail against an unreachable endpoint");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Unavailable(_)),
        "expected Unavailable, got {err:?}"
    );
    assert!(
        msg.contains("127.0.0.1:1"),
        "`{msg}` should name the endpoint"
    );
    assert_one_line(&msg);

    // The server is there, but the secret is wrong.
    let wrong = S3Options {
        secret_access_key: Some("not-the-secret".into()),
        ..S3Options::from_env()
    };
    let err = open_store(&t.url, &wrong)
        .await
        .expect_err("a wrong secret must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Config(_)),
        "expected Config, got {err:?}"
    );
    assert!(
        msg.contains("AWS_SECRET_ACCESS_KEY"),
        "`{msg}` should point at the credentials"
    );
    assert!(
        msg.contains(bucket.as_str()),
        "`{msg}` should name the bucket"
    );
    assert_one_line(&msg);
    let wrong = S3Options {
        create_bucket: false,
        ..wrong
    };
    let store = layer(open_store(&t.url, &wrong).await?);
    let err = verify_conditional_writes(store.as_ref(), &t.url)
        .await
        .expect_err("the probe must fail with a wrong secret");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Config(_)),
        "expected Config, got {err:?}"
    );
    assert!(
        msg.contains("AWS_SECRET_ACCESS_KEY"),
        "`{msg}` should point at the credentials"
    );
    assert_one_line(&msg);

    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The S3 server's conditional-write probe
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_passes_the_conditional_write_probe() -> TestResult {
    let url = StoreUrl::parse(&format!(
        "{}/{}",
        s3_base_url(),
        uuid::Uuid::new_v4().simple()
    ))?;
    let raw = open_store(&url, &S3Options::from_env())
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}; {HOW_TO_RUN_S3}"));
    verify_conditional_writes(raw.as_ref(), &url).await?;
    let layered = layer(Arc::clone(&raw));
    verify_conditional_writes(layered.as_ref(), &url).await?;
    // The probe cleans up after itself.
    assert!(
        listed(raw.list(None)).await?.is_empty(),
        "probe objects left behind"
    );
    Ok(())
}

#[tokio::test]
async fn s3_tests_refuse_to_skip() {
    // The S3 variants must fail, not pass vacuously, when no server is configured.
    let configured = std::env::var("STRATA_TEST_S3_URL").is_ok_and(|u| !u.trim().is_empty());
    let r = std::panic::catch_unwind(s3_base_url);
    assert_eq!(r.is_ok(), configured);
}

// ---------------------------------------------------------------------------------------------
// Instantiation: every case on every backend
// ---------------------------------------------------------------------------------------------

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        conformance!(@backend memory, Memory, $($case),+);
        conformance!(@backend local, Local, $($case),+);
        conformance!(@backend s3, S3, $($case),+);
    };
    (@backend $module:ident, $backend:ident, $($case:ident),+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let t = super::Backend::$backend.open().await;
                    let started = std::time::Instant::now();
                    super::$case(&t).await?;
                    eprintln!("{} on {}: {:?}", stringify!($case), t.url, started.elapsed());
                    t.cleanup().await
                }
            )+
        }
    };
}

conformance!(
    object_operations,
    conditional_writes,
    manifest_lifecycle,
    concurrent_committers,
    fencing,
    crash_before_commit_and_gc,
    lost_commit_response,
    wal_listing,
    startup_errors,
);
