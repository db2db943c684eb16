//! Choosing what a pass does to one table: which segments retention drops, which runs of
//! segments compaction merges, which delete rules are fully applied. Pure functions of a
//! manifest, so the policy is unit-tested without any I/O.

use std::collections::BTreeMap;

use arrow::datatypes::TimeUnit;
use strata_storage::segment::to_micros;
use strata_storage::{DeleteRule, SegmentMeta, TableDef, TableManifest};

use super::LifecycleOptions;

/// Length of a compaction window: segments are merged only with segments of the same shard
/// whose first row falls on the same UTC day.
pub(crate) const WINDOW_MICROS: i64 = 86_400 * 1_000_000;

/// A window is "hot" (still receiving rows) until this long after its end.
pub(crate) const HOT_GRACE_MICROS: i64 = 3_600 * 1_000_000;

/// Memory the Parquet reader of one input keeps per column while open, besides its pages
/// (decompression contexts, buffers; measured at 110-200 KiB), for sizing runs.
pub(crate) const READER_BYTES_PER_COLUMN: u64 = 192 << 10;

/// Estimated memory of one open input of a merge: its compressed row group (at most the
/// segment), the decompressed page of each column (≈ 4× compressed, at most a 1 MiB page
/// per column) and per-column reader state. Measured within 20% on 7-column log segments.
pub(crate) fn input_memory(seg: &SegmentMeta, columns: u64) -> u64 {
    seg.bytes + (4 * seg.bytes).min(columns << 20) + columns * READER_BYTES_PER_COLUMN
}

/// Segments merged into one or more outputs.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) shard: u32,
    pub(crate) inputs: Vec<SegmentMeta>,
}

impl Run {
    pub(crate) fn bytes(&self) -> u64 {
        self.inputs.iter().map(|s| s.bytes).sum()
    }
}

/// The retention cutoff of `def` at `now_micros`, in microseconds, rounded the way the query
/// path compares it (in the time column's own unit), so compaction drops exactly the rows
/// queries already hide. `None` without retention or a time column.
pub(crate) fn retention_cutoff(def: &TableDef, now_micros: i64) -> Option<i64> {
    let unit = def.time_unit()?;
    let secs = i64::try_from(def.retention_secs?).ok()?;
    let cutoff = now_micros.saturating_sub(secs.saturating_mul(1_000_000));
    Some(to_micros(to_unit(cutoff, unit), unit))
}

/// Microseconds to `unit`, as the query path converts its retention bound.
pub(crate) fn to_unit(micros: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => micros.div_euclid(1_000_000),
        TimeUnit::Millisecond => micros.div_euclid(1_000),
        TimeUnit::Microsecond => micros,
        TimeUnit::Nanosecond => micros.saturating_mul(1_000),
    }
}

/// Every row of `seg` is older than `cutoff`.
pub(crate) fn wholly_expired(seg: &SegmentMeta, cutoff: i64) -> bool {
    seg.max_ts.is_some_and(|t| t < cutoff)
}

/// Whether `rule` may still hide rows of `seg` that are physically present.
pub(crate) fn rule_pending(rule: &DeleteRule, seg: &SegmentMeta) -> bool {
    rule.id > seg.deletes_applied
        && rule
            .below_offsets
            .get(&seg.shard)
            .is_some_and(|b| seg.min_offset < *b)
}

/// Whether `seg` must be rewritten whatever its size: a delete rule still applies to it, or
/// at least `fraction` of its time span is past the retention cutoff (estimated linearly,
/// so a big segment is not rewritten every pass as the cutoff creeps through it).
pub(crate) fn needs_rewrite(
    m: &TableManifest,
    seg: &SegmentMeta,
    cutoff: Option<i64>,
    fraction: f64,
) -> bool {
    if m.deletes.iter().any(|r| rule_pending(r, seg)) {
        return true;
    }
    match (cutoff, seg.min_ts, seg.max_ts) {
        (Some(c), Some(lo), Some(hi)) if lo < c => {
            let span = (hi - lo).max(1) as f64;
            ((c - lo) as f64 / span) >= fraction
        }
        _ => false,
    }
}

/// The UTC day of a segment's first row; `None` for tables without a time column.
fn window(seg: &SegmentMeta) -> Option<i64> {
    seg.min_ts.map(|t| t.div_euclid(WINDOW_MICROS))
}

fn is_hot(window: Option<i64>, now_micros: i64) -> bool {
    window.is_none_or(|w| {
        (w + 1)
            .saturating_mul(WINDOW_MICROS)
            .saturating_add(HOT_GRACE_MICROS)
            > now_micros
    })
}

/// The runs to compact, most urgent first (runs with rewrites, then by shard and time).
///
/// 1. Candidates are segments smaller than half the target, and segments that need a
///    rewrite ([`needs_rewrite`]) whatever their size.
/// 2. Candidates are grouped by (shard, UTC day of `min_ts`), sorted by `min_ts`, and packed
///    greedily into runs of at most `target_bytes` input bytes, `max_inputs` segments and
///    `merge_memory_bytes` of estimated reader memory ([`input_memory`]).
/// 3. In a hot window (the current day, or one that ended less than an hour ago), the largest
///    input is left out of its run while it is bigger than all the others together (unless it
///    needs a rewrite): a growing segment is then rewritten only when the small ones beside it
///    have caught up with it, so each byte is rewritten O(log(target / flush size)) times
///    rather than once per pass. Cold windows merge fully, so a finished day ends with few
///    segments.
/// 4. A run is kept when it has at least `min_segments` inputs (and at least 2), or when one
///    of its inputs needs a rewrite.
pub(crate) fn plan_runs(
    m: &TableManifest,
    opts: &LifecycleOptions,
    cutoff: Option<i64>,
    now_micros: i64,
) -> Vec<Run> {
    let small = opts.target_bytes / 2;
    let columns = m.table.schema.fields().len() as u64 + 1;
    let fraction = opts.retention_rewrite_fraction;
    let mut groups: BTreeMap<(u32, Option<i64>), Vec<&SegmentMeta>> = BTreeMap::new();
    for seg in &m.segments {
        if cutoff.is_some_and(|c| wholly_expired(seg, c)) {
            continue; // retention removes it without reading it
        }
        if seg.bytes < small || needs_rewrite(m, seg, cutoff, fraction) {
            groups
                .entry((seg.shard, window(seg)))
                .or_default()
                .push(seg);
        }
    }
    let mut runs: Vec<(bool, Run)> = Vec::new();
    for ((shard, win), mut segs) in groups {
        segs.sort_by(|a, b| {
            (a.min_ts, a.min_offset, &a.path).cmp(&(b.min_ts, b.min_offset, &b.path))
        });
        let hot = is_hot(win, now_micros);
        let mut packed: Vec<Vec<&SegmentMeta>> = Vec::new();
        let mut cur: Vec<&SegmentMeta> = Vec::new();
        let (mut cur_bytes, mut cur_memory) = (0u64, 0u64);
        for seg in segs {
            let full = cur_bytes + seg.bytes > opts.target_bytes
                || cur_memory + input_memory(seg, columns) > opts.merge_memory_bytes
                || cur.len() >= opts.max_inputs.max(1);
            if !cur.is_empty() && full {
                packed.push(std::mem::take(&mut cur));
                (cur_bytes, cur_memory) = (0, 0);
            }
            cur_bytes += seg.bytes;
            cur_memory += input_memory(seg, columns);
            cur.push(seg);
        }
        if !cur.is_empty() {
            packed.push(cur);
        }
        for mut run in packed {
            let rewrite = |s: &SegmentMeta| needs_rewrite(m, s, cutoff, fraction);
            if hot {
                while run.len() >= 2 {
                    let total: u64 = run.iter().map(|s| s.bytes).sum();
                    let Some((i, big)) = run.iter().enumerate().max_by_key(|(_, s)| s.bytes) else {
                        break;
                    };
                    if big.bytes > total - big.bytes && !rewrite(big) {
                        run.remove(i);
                    } else {
                        break;
                    }
                }
            }
            let urgent = run.iter().any(|s| rewrite(s));
            if urgent || run.len() >= opts.min_segments.max(2) {
                runs.push((
                    urgent,
                    Run {
                        shard,
                        inputs: run.into_iter().cloned().collect(),
                    },
                ));
            }
        }
    }
    // Stable: urgent runs first, otherwise shard and time order.
    runs.sort_by_key(|(urgent, _)| !*urgent);
    runs.into_iter().map(|(_, r)| r).collect()
}

/// Delete rules of `m` that no longer hide anything physically present: for every shard the
/// rule covers, every row below its bound is in a segment (`flushed_offset >= bound`), and
/// every segment that may hold such rows has had the rule applied.
pub(crate) fn applied_rules(m: &TableManifest) -> Vec<u64> {
    m.deletes
        .iter()
        .filter(|rule| {
            rule.below_offsets.iter().all(|(shard, below)| {
                *below == 0
                    || (m
                        .shards
                        .get(shard)
                        .is_none_or(|st| st.flushed_offset >= *below)
                        && !m
                            .segments
                            .iter()
                            .any(|seg| seg.shard == *shard && rule_pending(rule, seg)))
            })
        })
        .map(|r| r.id)
        .collect()
}
