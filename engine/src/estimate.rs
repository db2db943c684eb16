//! `strata estimate`: from an expected load to nodes per role, cache sizes, bucket size, and
//! object-store requests and their cost per month.
//!
//! The arithmetic is plain and printed with its assumptions: each role's work is the load
//! times what one core does (the [`Figures`] the bench measured: `strata-bench` writes them to
//! `figures.json` in its work folder), plus headroom, divided by the cores of a node. See
//! `docs/sizing.md` for a worked example and what the model leaves out.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use strata_common::sizing::Figures;

/// The figures measured for this release (`strata-bench`, 10M rows; see `docs/sizing.md`).
const RELEASE_FIGURES: &str = include_str!("estimate/figures.json");

/// Seconds in the 30-day month the costs are given for.
const MONTH_SECS: f64 = 30.0 * 86_400.0;

/// The expected load and the prices.
#[derive(Debug, Clone, Args)]
pub struct EstimateArgs {
    /// Rows ingested per second, averaged over a day
    #[arg(long, default_value_t = 20_000.0)]
    pub rows_per_sec: f64,
    /// Bytes per row as sent (Arrow IPC) [default: the bench's log rows, see the figures]
    #[arg(long)]
    pub row_bytes: Option<f64>,
    /// Days rows are kept (the tables' retention)
    #[arg(long, default_value_t = 14.0)]
    pub retention_days: f64,
    /// Point lookups (by request id, trace id) per second
    #[arg(long, default_value_t = 5.0)]
    pub lookups_per_sec: f64,
    /// Hours of newest rows a lookup searches (its time range)
    #[arg(long, default_value_t = 24.0)]
    pub lookup_hours: f64,
    /// Aggregates over the newest --window-minutes (dashboards, alerts) per second
    #[arg(long, default_value_t = 1.0)]
    pub window_queries_per_sec: f64,
    /// Minutes of newest rows a window aggregate reads
    #[arg(long, default_value_t = 60.0)]
    pub window_minutes: f64,
    /// Aggregates over the whole retention (reports, investigations) per hour
    #[arg(long, default_value_t = 1.0)]
    pub full_scans_per_hour: f64,
    /// Share of the bytes older than --hot-hours that queries find in the caches anyway (0 to 1)
    #[arg(long, default_value_t = 0.0)]
    pub cache_hit_ratio: f64,
    /// Hours of newest rows the caches should hold
    #[arg(long, default_value_t = 24.0)]
    pub hot_hours: f64,
    /// Tables under that load
    #[arg(long, default_value_t = 1)]
    pub tables: u32,
    /// Shards per table
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Compute nodes reuse a table's manifest and WAL listings this long (query.manifest_ttl)
    #[arg(long, default_value_t = 100)]
    pub manifest_ttl_ms: u64,
    /// Cores per node
    #[arg(long, default_value_t = 8)]
    pub cores_per_node: u32,
    /// Memory per node, GiB
    #[arg(long, default_value_t = 32.0)]
    pub memory_gib_per_node: f64,
    /// Spare capacity on top of the load (0.3 = 30%)
    #[arg(long, default_value_t = 0.3)]
    pub headroom: f64,
    /// Object storage price, $ per GB-month
    #[arg(long, default_value_t = 0.023)]
    pub price_gb_month: f64,
    /// $ per 1,000 PUT and LIST requests
    #[arg(long, default_value_t = 0.005)]
    pub price_put_per_1000: f64,
    /// $ per 1,000 GET and HEAD requests
    #[arg(long, default_value_t = 0.0004)]
    pub price_get_per_1000: f64,
    /// Figures measured by `strata-bench` (the figures.json of its work folder) [default: the
    /// release's]
    #[arg(long)]
    pub figures: Option<PathBuf>,
    /// Print the estimate as JSON
    #[arg(long)]
    pub json: bool,
}

/// Nodes of one role and the cores of work behind the count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Role {
    pub nodes: u32,
    /// Cores the load keeps busy, before headroom.
    pub busy_cores: f64,
}

/// Requests per month by purpose.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Requests {
    pub wal_puts: f64,
    pub segment_puts: f64,
    pub catalog_lists: f64,
    pub catalog_gets: f64,
    pub query_gets: f64,
}

impl Requests {
    /// Requests billed at the PUT price (PUT, LIST).
    pub fn put_class(&self) -> f64 {
        self.wal_puts + self.segment_puts + self.catalog_lists
    }

    /// Requests billed at the GET price.
    pub fn get_class(&self) -> f64 {
        self.catalog_gets + self.query_gets
    }
}

/// What the load needs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub ingest: Role,
    pub compute: Role,
    pub compaction: Role,
    /// Stateless; two for availability unless the request rate needs more.
    pub gateways: u32,
    pub ssd_cache_bytes_per_compute_node: f64,
    pub memory_cache_bytes_per_compute_node: f64,
    pub bucket_bytes: f64,
    pub requests_per_month: Requests,
    pub storage_cost_per_month: f64,
    pub put_cost_per_month: f64,
    pub get_cost_per_month: f64,
    pub total_cost_per_month: f64,
    /// Seconds a full-retention aggregate takes on one compute node, warm.
    pub full_scan_secs_one_node: f64,
    /// Every assumption the figures above rest on.
    pub assumptions: Vec<String>,
}

/// The release's figures, or `path`'s.
pub fn load_figures(path: Option<&std::path::Path>) -> Result<Figures, String> {
    let (text, from) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            RELEASE_FIGURES.to_string(),
            "the release figures".to_string(),
        ),
    };
    let f: Figures =
        serde_json::from_str(&text).map_err(|e| format!("{from} are not bench figures: {e}"))?;
    let positive = [
        ("ingest_rows_per_core_sec", f.ingest_rows_per_core_sec),
        ("ingest_bytes_per_row", f.ingest_bytes_per_row),
        ("stored_bytes_per_row", f.stored_bytes_per_row),
        ("rows_per_segment", f.rows_per_segment),
        ("compact_rows_per_core_sec", f.compact_rows_per_core_sec),
        ("bytes_per_get", f.bytes_per_get),
    ];
    for (name, v) in positive {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("{from}: {name} must be a positive number, not {v}"));
        }
    }
    Ok(f)
}

/// Checks the load: rates and sizes non-negative and finite, ratios within 0..=1, at least
/// one core per node.
fn validate(a: &EstimateArgs) -> Result<(), String> {
    let non_negative = [
        ("--rows-per-sec", a.rows_per_sec),
        ("--retention-days", a.retention_days),
        ("--lookups-per-sec", a.lookups_per_sec),
        ("--lookup-hours", a.lookup_hours),
        ("--window-queries-per-sec", a.window_queries_per_sec),
        ("--window-minutes", a.window_minutes),
        ("--full-scans-per-hour", a.full_scans_per_hour),
        ("--hot-hours", a.hot_hours),
        ("--memory-gib-per-node", a.memory_gib_per_node),
        ("--headroom", a.headroom),
        ("--price-gb-month", a.price_gb_month),
        ("--price-put-per-1000", a.price_put_per_1000),
        ("--price-get-per-1000", a.price_get_per_1000),
        ("--row-bytes", a.row_bytes.unwrap_or(1.0)),
    ];
    for (flag, v) in non_negative {
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("{flag} must be a number ≥ 0, not {v}"));
        }
    }
    if !(0.0..=1.0).contains(&a.cache_hit_ratio) {
        return Err(format!(
            "--cache-hit-ratio must be between 0 and 1, not {}",
            a.cache_hit_ratio
        ));
    }
    if a.cores_per_node == 0 || a.shards == 0 {
        return Err("--cores-per-node and --shards must be at least 1".into());
    }
    Ok(())
}

/// Nodes for `busy` cores of work with headroom; at least one.
fn nodes(busy: f64, a: &EstimateArgs) -> u32 {
    let n = (busy * (1.0 + a.headroom) / f64::from(a.cores_per_node)).ceil();
    (n as u32).max(1)
}

/// The estimate for load `a` from figures `f`.
pub fn estimate(a: &EstimateArgs, f: &Figures) -> Result<Estimate, String> {
    validate(a)?;
    let row_bytes = a.row_bytes.unwrap_or(f.ingest_bytes_per_row);
    // Work and stored bytes per row grow with the row's size.
    let scale = row_bytes / f.ingest_bytes_per_row;
    let stored_per_row = f.stored_bytes_per_row * scale;
    let table_rows = a.rows_per_sec * 86_400.0 * a.retention_days;
    let window_rows = a.rows_per_sec * a.window_minutes * 60.0;
    let lookup_rows = a.rows_per_sec * a.lookup_hours.min(a.retention_days * 24.0) * 3600.0;
    let millions = |rows: f64| rows / 1e6;

    // Ingest: acknowledged-durable rows per core.
    let ingest_busy = a.rows_per_sec * scale / f.ingest_rows_per_core_sec;
    // Compaction: every row is rewritten about twice (small flushed segments merged, then
    // merged again as they age).
    const REWRITES: f64 = 2.0;
    let compaction_busy = a.rows_per_sec * scale * REWRITES / f.compact_rows_per_core_sec;

    // Queries: core-seconds per query times queries per second.
    let lookup_core_s = f.lookup.core_ms_per_million_rows * millions(lookup_rows) * scale / 1e3;
    let window_core_s = f.scan.core_ms_per_million_rows * millions(window_rows) * scale / 1e3;
    let full_core_s = f.scan.core_ms_per_million_rows * millions(table_rows) * scale / 1e3;
    let full_per_sec = a.full_scans_per_hour / 3600.0;
    let compute_busy = a.lookups_per_sec * lookup_core_s
        + a.window_queries_per_sec * window_core_s
        + full_per_sec * full_core_s;
    let compute = Role {
        nodes: nodes(compute_busy, a),
        busy_cores: compute_busy,
    };

    // Caches: the hot hours of segments, split over compute nodes by segment affinity.
    let hot_bytes = a.rows_per_sec * a.hot_hours * 3600.0 * stored_per_row;
    let ssd = hot_bytes / f64::from(compute.nodes) * (1.0 + a.headroom);
    let window_bytes = window_rows * stored_per_row;
    let memory_cap = a.memory_gib_per_node * f64::from(1u32 << 30) * 0.25;
    let memory = (window_bytes / f64::from(compute.nodes) * (1.0 + a.headroom)).clamp(
        256.0 * f64::from(1u32 << 20),
        memory_cap.max(256.0 * f64::from(1u32 << 20)),
    );

    let bucket_bytes = table_rows * stored_per_row;

    // Requests per month.
    let wal_puts = a.rows_per_sec * f.wal_puts_per_million_rows / 1e6 * MONTH_SECS;
    // A segment PUT and a manifest commit per flushed or compacted segment.
    let segment_puts = a.rows_per_sec * (1.0 + REWRITES) / f.rows_per_segment * 2.0 * MONTH_SECS;
    // A compute node refreshes a table's manifest (one LIST, at most one GET) and WAL
    // listings (one LIST per shard) at most once per manifest TTL, when queries come.
    let qps = a.lookups_per_sec + a.window_queries_per_sec + full_per_sec;
    let per_node_qps = qps / f64::from(compute.nodes);
    let ttl_secs = (a.manifest_ttl_ms as f64 / 1e3).max(1e-3);
    let refreshes = per_node_qps.min(1.0 / ttl_secs)
        * f64::from(a.tables)
        * f64::from(compute.nodes)
        * MONTH_SECS;
    let catalog_lists = refreshes * f64::from(1 + a.shards);
    let catalog_gets = refreshes;
    // The caches hold the hot hours: new segments are fetched once (by the node the gateway
    // routes them to); a query's rows older than that are read from the bucket, less what the
    // caches hold anyway.
    let hot_rows = a.rows_per_sec * a.hot_hours * 3600.0;
    let miss = 1.0 - a.cache_hit_ratio;
    let cold_millions = |rows: f64| millions((rows - hot_rows).max(0.0)) * miss;
    let new_bytes_per_sec = a.rows_per_sec * stored_per_row;
    let old_bytes_per_sec =
        (a.lookups_per_sec * f.lookup.cold_bytes_per_million_rows * cold_millions(lookup_rows)
            + a.window_queries_per_sec
                * f.scan.cold_bytes_per_million_rows
                * cold_millions(window_rows)
            + full_per_sec * f.scan.cold_bytes_per_million_rows * cold_millions(table_rows))
            * scale;
    let query_gets = (new_bytes_per_sec + old_bytes_per_sec) / f.bytes_per_get * MONTH_SECS;
    let requests = Requests {
        wal_puts,
        segment_puts,
        catalog_lists,
        catalog_gets,
        query_gets,
    };
    let storage_cost = bucket_bytes / 1e9 * a.price_gb_month;
    let put_cost = requests.put_class() / 1e3 * a.price_put_per_1000;
    let get_cost = requests.get_class() / 1e3 * a.price_get_per_1000;

    let assumptions = vec![
        format!("per-core figures: {} ({} cores, {} rows)", f.measured_on, f.cores, f.rows),
        format!(
            "ingest: {:.0} rows/s per core at {:.0} B/row (8k-row Arrow batches, acknowledged once in the WAL); work scales with row size",
            f.ingest_rows_per_core_sec, f.ingest_bytes_per_row
        ),
        format!(
            "stored: {:.1} B/row in Parquet ({:.1} B/row at {row_bytes:.0} B/row sent)",
            f.stored_bytes_per_row, stored_per_row
        ),
        format!(
            "lookups: {:.2} core-ms per million rows in their {} h range, warm: every segment in range has its bloom filter checked, so the cost grows with the range",
            f.lookup.core_ms_per_million_rows, a.lookup_hours
        ),
        format!(
            "aggregates: {:.1} core-ms per million rows in range, warm (geometric mean of {})",
            f.scan.core_ms_per_million_rows,
            f.scan.from.join(", ")
        ),
        format!(
            "compaction rewrites each row {REWRITES:.0} times at {:.0} rows/s per core",
            f.compact_rows_per_core_sec
        ),
        format!(
            "caches: the newest {} h on SSD split over compute nodes (the gateway routes a segment to the node that caches it); the window in memory, 256 MiB to 25% of a node's memory",
            a.hot_hours
        ),
        format!(
            "requests: {:.0} WAL PUTs per million rows; a PUT and a manifest commit per segment of {:.0} rows; a manifest LIST + GET and a LIST per shard per table per compute node at most every {} ms while queries come; {:.0} KiB per GET; new segments fetched once into a cache; rows older than {} h read from the bucket ({:.0}% found in a cache), at {:.1} MB per million rows for aggregates",
            f.wal_puts_per_million_rows,
            f.rows_per_segment,
            a.manifest_ttl_ms,
            f.bytes_per_get / 1024.0,
            a.hot_hours,
            a.cache_hit_ratio * 100.0,
            f.scan.cold_bytes_per_million_rows / 1e6
        ),
        format!("{:.0}% headroom on every role; a 30-day month", a.headroom * 100.0),
        "not modelled: replication of the bucket, egress, GC and retention deletes, the WAL's transient bytes, network limits".to_string(),
    ];
    Ok(Estimate {
        ingest: Role {
            nodes: nodes(ingest_busy, a),
            busy_cores: ingest_busy,
        },
        compaction: Role {
            nodes: nodes(compaction_busy, a),
            busy_cores: compaction_busy,
        },
        gateways: 2,
        ssd_cache_bytes_per_compute_node: ssd,
        memory_cache_bytes_per_compute_node: memory,
        bucket_bytes,
        requests_per_month: requests,
        storage_cost_per_month: storage_cost,
        put_cost_per_month: put_cost,
        get_cost_per_month: get_cost,
        total_cost_per_month: storage_cost + put_cost + get_cost,
        full_scan_secs_one_node: full_core_s / f64::from(a.cores_per_node),
        compute,
        assumptions,
    })
}

/// Bytes with a binary unit (`1.5 GiB`).
fn bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A count with a metric suffix (`12.3 M`).
fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2} G", n / 1e9),
        n if n >= 1e6 => format!("{:.2} M", n / 1e6),
        n if n >= 1e3 => format!("{:.1} k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// The estimate as text.
pub fn render(a: &EstimateArgs, e: &Estimate) -> String {
    let mut s = String::new();
    let c = a.cores_per_node;
    let r = &e.requests_per_month;
    let _ = writeln!(s, "Strata sizing estimate\n");
    let _ = writeln!(
        s,
        "load: {} rows/s kept {} days; {} lookups/s over {} h, {} aggregates/s over {} min, {} full-retention aggregates/h\n",
        count(a.rows_per_sec),
        a.retention_days,
        a.lookups_per_sec,
        a.lookup_hours,
        a.window_queries_per_sec,
        a.window_minutes,
        a.full_scans_per_hour
    );
    let _ = writeln!(s, "nodes ({c} cores, {} GiB each)", a.memory_gib_per_node);
    for (name, role) in [
        ("ingest", &e.ingest),
        ("compute", &e.compute),
        ("compaction", &e.compaction),
    ] {
        let _ = writeln!(
            s,
            "  {name:<11}{:>4}   ({:.2} cores busy)",
            role.nodes, role.busy_cores
        );
    }
    let _ = writeln!(
        s,
        "  {:<11}{:>4}   (stateless; two for availability)",
        "gateway", e.gateways
    );
    let _ = writeln!(
        s,
        "  a full-retention aggregate takes ~{:.1} s on one compute node, warm\n",
        e.full_scan_secs_one_node
    );
    let _ = writeln!(s, "cache per compute node");
    let _ = writeln!(
        s,
        "  ssd        {}",
        bytes(e.ssd_cache_bytes_per_compute_node)
    );
    let _ = writeln!(
        s,
        "  memory     {}\n",
        bytes(e.memory_cache_bytes_per_compute_node)
    );
    let _ = writeln!(s, "bucket       {}\n", bytes(e.bucket_bytes));
    let _ = writeln!(s, "object-store requests per month");
    let _ = writeln!(s, "  WAL PUT            {:>10}", count(r.wal_puts));
    let _ = writeln!(s, "  segment+manifest   {:>10}", count(r.segment_puts));
    let _ = writeln!(s, "  catalog LIST       {:>10}", count(r.catalog_lists));
    let _ = writeln!(s, "  catalog GET        {:>10}", count(r.catalog_gets));
    let _ = writeln!(s, "  query GET          {:>10}\n", count(r.query_gets));
    let _ = writeln!(s, "cost per month");
    let _ = writeln!(s, "  storage    ${:>10.2}", e.storage_cost_per_month);
    let _ = writeln!(s, "  PUT/LIST   ${:>10.2}", e.put_cost_per_month);
    let _ = writeln!(s, "  GET        ${:>10.2}", e.get_cost_per_month);
    let _ = writeln!(s, "  total      ${:>10.2}\n", e.total_cost_per_month);
    let _ = writeln!(s, "assumptions");
    for line in &e.assumptions {
        let _ = writeln!(s, "  - {line}");
    }
    s
}

/// `strata estimate`.
pub fn run(a: &EstimateArgs) -> Result<(), String> {
    let f = load_figures(a.figures.as_deref())?;
    let e = estimate(a, &f)?;
    if a.json {
        let text = serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", render(a, &e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: EstimateArgs,
    }

    fn args(flags: &[&str]) -> EstimateArgs {
        let mut argv = vec!["estimate"];
        argv.extend_from_slice(flags);
        Cli::parse_from(argv).a
    }

    fn release() -> Figures {
        load_figures(None).expect("the release figures parse")
    }

    #[test]
    fn roles_grow_with_their_load_and_headroom() {
        let f = release();
        let base = estimate(&args(&[]), &f).expect("estimate");
        let twice = estimate(&args(&["--rows-per-sec", "40000"]), &f).expect("estimate");
        assert!((twice.ingest.busy_cores - 2.0 * base.ingest.busy_cores).abs() < 1e-9);
        assert!((twice.bucket_bytes - 2.0 * base.bucket_bytes).abs() < 1.0);
        assert!(twice.requests_per_month.wal_puts > base.requests_per_month.wal_puts);

        // Busy cores × (1 + headroom) / cores, rounded up.
        let a = args(&["--rows-per-sec", "1000000", "--cores-per-node", "4"]);
        let e = estimate(&a, &f).expect("estimate");
        let want = (e.ingest.busy_cores * 1.3 / 4.0).ceil() as u32;
        assert_eq!(e.ingest.nodes, want.max(1));
        let none = estimate(
            &args(&[
                "--rows-per-sec",
                "1000000",
                "--cores-per-node",
                "4",
                "--headroom",
                "0",
            ]),
            &f,
        )
        .expect("estimate");
        assert!(none.ingest.nodes <= e.ingest.nodes);

        let busy = estimate(&args(&["--lookups-per-sec", "1000"]), &f).expect("estimate");
        assert!(busy.compute.busy_cores > base.compute.busy_cores);
        assert!(busy.compute.nodes >= base.compute.nodes);
    }

    #[test]
    fn costs_follow_the_prices() {
        let f = release();
        let e = estimate(&args(&[]), &f).expect("estimate");
        let r = &e.requests_per_month;
        assert!((e.storage_cost_per_month - e.bucket_bytes / 1e9 * 0.023).abs() < 1e-6);
        assert!((e.put_cost_per_month - r.put_class() / 1e3 * 0.005).abs() < 1e-6);
        assert!((e.get_cost_per_month - r.get_class() / 1e3 * 0.0004).abs() < 1e-6);
        let free = estimate(&args(&["--price-put-per-1000", "0"]), &f).expect("estimate");
        assert_eq!(free.put_cost_per_month, 0.0);
        // A longer manifest TTL means fewer catalog requests when queries are frequent.
        let busy = ["--lookups-per-sec", "0", "--window-queries-per-sec", "100"];
        let slow_args: Vec<&str> = busy
            .iter()
            .copied()
            .chain(["--manifest-ttl-ms", "1000"])
            .collect();
        let slow = estimate(&args(&slow_args), &f).expect("estimate");
        let fast = estimate(&args(&busy), &f).expect("estimate");
        assert!(slow.requests_per_month.catalog_lists < fast.requests_per_month.catalog_lists);
        // Old rows all in a cache: query GETs are only the new segments' first reads.
        let hot = estimate(&args(&["--cache-hit-ratio", "1"]), &f).expect("estimate");
        let stored_per_sec = 20_000.0 * f.stored_bytes_per_row;
        let new_only = stored_per_sec / f.bytes_per_get * MONTH_SECS;
        assert!((hot.requests_per_month.query_gets - new_only).abs() < 1.0);
        assert!(e.requests_per_month.query_gets > hot.requests_per_month.query_gets);
    }

    #[test]
    fn bad_load_is_refused() {
        let f = release();
        for flags in [
            &["--cache-hit-ratio", "1.5"][..],
            &["--rows-per-sec=-1"][..],
            &["--cores-per-node", "0"][..],
            &["--row-bytes", "NaN"][..],
        ] {
            assert!(estimate(&args(flags), &f).is_err(), "{flags:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("figures.json");
        std::fs::write(&p, "{}").expect("write");
        assert!(load_figures(Some(&p)).is_err());
        let mut bad = release();
        bad.ingest_rows_per_core_sec = 0.0;
        std::fs::write(&p, serde_json::to_string(&bad).expect("json")).expect("write");
        let e = load_figures(Some(&p)).expect_err("zero rate");
        assert!(e.contains("ingest_rows_per_core_sec"), "{e}");
    }

    #[test]
    fn the_text_names_every_role_and_assumption() {
        let a = args(&[]);
        let e = estimate(&a, &release()).expect("estimate");
        let text = render(&a, &e);
        for part in [
            "ingest",
            "compute",
            "compaction",
            "gateway",
            "ssd",
            "bucket",
            "total",
            "assumptions",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert_eq!(text.matches("\n  - ").count(), e.assumptions.len());
    }
}
