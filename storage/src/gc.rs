//! Garbage: objects no retained manifest version references.
//!
//! An object is garbage when it is a segment or WAL entry that none of the last
//! `keep_versions` manifest versions references (for WAL entries: whose sequence is below
//! every retained version's `flushed_wal_seq`), and its grace of `min_age` has passed:
//!
//! - a segment a commit took out of the table (compaction, retention) is kept for `min_age`
//!   after that commit (the manifest's `unreferenced` list records when), so a reader still
//!   working from an older version never meets a missing file, however old the file is;
//! - a segment no version ever referenced (a flush whose commit never happened) is kept for
//!   `min_age` after its upload, which protects a flush in flight.
//!
//! Manifest versions older than the retained ones are garbage too, once older than
//! `min_age`. Deleted segments leave the `unreferenced` list in one more commit.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::paths;

/// What to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Never delete an object younger than this. Default: 1 hour.
    pub min_age: Duration,
    /// Manifest versions kept (and whose files are kept). Default: 10.
    pub keep_versions: usize,
    /// Only report; delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(3600),
            keep_versions: 10,
            dry_run: false,
        }
    }
}

/// What a GC pass found (and deleted unless dry-run).
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub orphan_segments: Vec<Path>,
    pub flushed_wal: Vec<Path>,
    pub old_manifests: Vec<Path>,
    /// Unreferenced but younger than `min_age`: kept this time.
    pub too_young: usize,
    pub bytes_reclaimed: u64,
    pub deleted: usize,
}

/// Find (and unless `dry_run`, delete) garbage of one table.
pub async fn collect_table(catalog: &Catalog, table: &str, opts: &GcOptions) -> Result<GcReport> {
    let store = catalog.store();
    let versions = catalog.list_versions(table).await?;
    let keep_from = versions.len().saturating_sub(opts.keep_versions.max(1));
    let (old, kept) = versions.split_at(keep_from);

    let mut referenced: HashSet<String> = HashSet::new();
    let mut wal_floor: Vec<(u32, u64)> = Vec::new();
    let mut unreferenced_since: HashMap<String, i64> = HashMap::new();
    for (i, v) in kept.iter().enumerate() {
        let m = catalog.load_version(table, *v).await?;
        referenced.extend(m.segments.iter().map(|s| s.path.clone()));
        if i == 0 {
            wal_floor = m
                .shards
                .iter()
                .map(|(s, st)| (*s, st.flushed_wal_seq))
                .collect();
        }
        if i + 1 == kept.len() {
            unreferenced_since = m
                .unreferenced
                .iter()
                .map(|u| (u.path.clone(), u.since_ms))
                .collect();
        }
    }
    let now = chrono::DateTime::from_timestamp_millis(catalog.now_ms()).unwrap_or_default();
    let min_age_ms = i64::try_from(opts.min_age.as_millis()).unwrap_or(i64::MAX);
    let old_enough =
        |meta: &ObjectMeta| (now - meta.last_modified).to_std().unwrap_or_default() >= opts.min_age;
    // A segment taken out by a commit: its grace runs from that commit.
    let grace_over = |meta: &ObjectMeta| match unreferenced_since.get(meta.location.as_ref()) {
        Some(since) => now.timestamp_millis().saturating_sub(*since) >= min_age_ms,
        None => old_enough(meta),
    };

    let mut report = GcReport::default();
    let mut doomed: Vec<ObjectMeta> = Vec::new();
    let segs: Vec<ObjectMeta> = store
        .list(Some(&paths::segment_dir(table)))
        .try_collect()
        .await?;
    let listed: HashSet<String> = segs.iter().map(|m| m.location.to_string()).collect();
    for meta in segs {
        if referenced.contains(meta.location.as_ref()) {
            continue;
        }
        if grace_over(&meta) && old_enough(&meta) {
            report.orphan_segments.push(meta.location.clone());
            doomed.push(meta);
        } else {
            report.too_young += 1;
        }
    }
    for (shard, floor) in wal_floor {
        let wal: Vec<ObjectMeta> = store
            .list(Some(&paths::wal_dir(table, shard)))
            .try_collect()
            .await?;
        for meta in wal {
            if paths::parse_wal_seq(&meta.location).is_some_and(|seq| seq < floor) {
                report.flushed_wal.push(meta.location.clone());
                doomed.push(meta);
            }
        }
    }
    for v in old {
        let path = paths::manifest_version(table, *v);
        if let Ok(meta) = store.head(&path).await
            && old_enough(&meta)
        {
            report.old_manifests.push(path);
            doomed.push(meta);
        }
    }
    if !opts.dry_run {
        for meta in doomed {
            match store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    report.deleted += 1;
                    report.bytes_reclaimed += meta.size;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Forget the deleted segments (and any whose object is gone) in the manifest.
        let gone: HashSet<&str> = report
            .orphan_segments
            .iter()
            .map(|p| p.as_ref())
            .chain(
                unreferenced_since
                    .keys()
                    .map(String::as_str)
                    .filter(|p| !listed.contains(*p)),
            )
            .collect();
        if unreferenced_since.keys().any(|p| gone.contains(p.as_str())) {
            catalog
                .commit(table, |m| {
                    m.unreferenced.retain(|u| !gone.contains(u.path.as_str()));
                    Ok(())
                })
                .await?;
        }
    }
    Ok(report)
}
