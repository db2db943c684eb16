//! Which compute node runs a query: round robin, least outstanding, smooth weighted round
//! robin, or cache affinity (rendezvous hashing with bounded load).
//!
//! The balancer only chooses among the candidates the pool offers (healthy, breaker closed or
//! half-open, not yet tried by this request when possible).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::config::Policy;
use super::pool::Node;

/// Cache affinity gives up a key's preferred node when it has more than this factor of the
/// mean in-flight load ("consistent hashing with bounded loads", Mirrokni et al. 2016) …
const AFFINITY_LOAD_FACTOR: f64 = 1.25;
/// … plus this many requests of slack, so a lightly loaded cluster still sticks.
const AFFINITY_LOAD_SLACK: usize = 2;

/// What the balancer needs to know of the nodes: index `i` is node `i`.
pub(crate) trait NodeLoads {
    fn in_flight(&self, i: usize) -> usize;
    fn weight(&self, i: usize) -> u32;
}

impl NodeLoads for [Arc<Node>] {
    fn in_flight(&self, i: usize) -> usize {
        self.get(i).map_or(usize::MAX, |n| n.in_flight())
    }
    fn weight(&self, i: usize) -> u32 {
        self.get(i).map_or(1, |n| n.weight)
    }
}

#[derive(Debug)]
pub(crate) struct Balancer {
    policy: Policy,
    next: AtomicUsize,
    /// Smooth weighted round robin: current weight per node.
    current: Mutex<Vec<i64>>,
    /// Stable hash of each node's address, for rendezvous hashing.
    node_hashes: Vec<u64>,
}

impl Balancer {
    pub(crate) fn new<S: AsRef<str>>(policy: Policy, addrs: &[S]) -> Self {
        Self {
            policy,
            next: AtomicUsize::new(0),
            current: Mutex::new(vec![0; addrs.len()]),
            node_hashes: addrs.iter().map(|a| fnv1a(a.as_ref().as_bytes())).collect(),
        }
    }

    /// Choose one of `candidates` (node indices); `key` is the affinity key.
    pub(crate) fn pick<L: NodeLoads + ?Sized>(
        &self,
        nodes: &L,
        candidates: &[usize],
        key: u64,
    ) -> Option<usize> {
        match candidates {
            [] => None,
            [only] => Some(*only),
            _ => Some(match self.policy {
                Policy::RoundRobin => {
                    candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()]
                }
                Policy::LeastOutstanding => self.least_outstanding(nodes, candidates),
                Policy::Weighted => self.weighted(nodes, candidates),
                Policy::CacheAffinity => self.affinity(nodes, candidates, key),
            }),
        }
    }

    fn least_outstanding<L: NodeLoads + ?Sized>(&self, nodes: &L, candidates: &[usize]) -> usize {
        // Start the scan at a rotating offset so ties (e.g. an idle cluster) spread evenly.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = candidates.len();
        (0..n)
            .map(|k| candidates[(start + k) % n])
            .min_by_key(|&i| nodes.in_flight(i))
            .unwrap_or(candidates[0])
    }

    fn weighted<L: NodeLoads + ?Sized>(&self, nodes: &L, candidates: &[usize]) -> usize {
        let mut current = self.current.lock();
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for &i in candidates {
            let w = i64::from(nodes.weight(i).max(1));
            let Some(c) = current.get_mut(i) else {
                continue;
            };
            *c += w;
            total += w;
            let c = *c;
            if best.is_none_or(|(_, b)| c > b) {
                best = Some((i, c));
            }
        }
        let Some((best, _)) = best else {
            return candidates[0];
        };
        if let Some(c) = current.get_mut(best) {
            *c -= total;
        }
        best
    }

    /// Rendezvous hashing: every node scores the key; the highest score wins, so removing a
    /// node only moves its own keys. A node loaded beyond the bound passes to the next score.
    fn affinity<L: NodeLoads + ?Sized>(&self, nodes: &L, candidates: &[usize], key: u64) -> usize {
        let mut ranked: Vec<(u64, usize)> = candidates
            .iter()
            .map(|&i| {
                (
                    mix(key ^ self.node_hashes.get(i).copied().unwrap_or(i as u64)),
                    i,
                )
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let total: usize = candidates.iter().map(|&i| nodes.in_flight(i)).sum();
        let bound = ((total + 1) as f64 * AFFINITY_LOAD_FACTOR / candidates.len() as f64).ceil()
            as usize
            + AFFINITY_LOAD_SLACK;
        ranked
            .iter()
            .map(|&(_, i)| i)
            .find(|&i| nodes.in_flight(i) < bound)
            .unwrap_or(ranked[0].1)
    }
}

/// The cache-affinity key of a statement: the tenant and the sorted set of tables it reads
/// (so `SELECT … FROM logs WHERE …` with any filter meets the same node), or the normalized
/// statement when no table is found. Time ranges are left out: most are relative to `now()`.
pub(crate) fn affinity_key(tenant: Option<&str>, sql: &str) -> u64 {
    let tables = tables_in_sql(sql);
    let mut text = String::from(tenant.unwrap_or(""));
    text.push('\0');
    if tables.is_empty() {
        text.push_str(
            &sql.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        );
    } else {
        text.push_str(&tables.join(","));
    }
    fnv1a(text.as_bytes())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokenize(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' || c == '`' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        s.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            // String literals never name tables; keep a placeholder so positions stay right.
            out.push(if c == '\'' {
                Tok::Punct('\'')
            } else {
                Tok::Quoted(s)
            });
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

const NOT_AN_ALIAS: &[&str] = &[
    "where",
    "join",
    "inner",
    "left",
    "right",
    "full",
    "outer",
    "cross",
    "on",
    "group",
    "order",
    "limit",
    "union",
    "having",
    "natural",
    "using",
    "window",
    "qualify",
    "offset",
    "except",
    "intersect",
    "lateral",
    "select",
    "from",
];

/// Tables named after `FROM` and `JOIN` (qualified names kept whole), sorted and deduplicated.
pub(crate) fn tables_in_sql(sql: &str) -> Vec<String> {
    let toks = tokenize(sql);
    let name_part = |t: Option<&Tok>| match t {
        Some(Tok::Word(w)) => Some(w.clone()),
        Some(Tok::Quoted(q)) => Some(q.clone()),
        _ => None,
    };
    let mut tables = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Word(w) = &toks[i] else {
            i += 1;
            continue;
        };
        let is_from = w == "from";
        if !is_from && w != "join" {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while let Some(first) = name_part(toks.get(j)) {
            if NOT_AN_ALIAS.contains(&first.as_str()) && matches!(toks.get(j), Some(Tok::Word(_))) {
                break;
            }
            let mut name = first;
            j += 1;
            while toks.get(j) == Some(&Tok::Punct('.')) {
                let Some(part) = name_part(toks.get(j + 1)) else {
                    break;
                };
                name.push('.');
                name.push_str(&part);
                j += 2;
            }
            tables.push(name);
            // Optional alias: `AS x` or a bare word that is not a keyword.
            match toks.get(j) {
                Some(Tok::Word(a)) if a == "as" => j += 2,
                Some(Tok::Word(a)) if !NOT_AN_ALIAS.contains(&a.as_str()) => j += 1,
                Some(Tok::Quoted(_)) => j += 1,
                _ => {}
            }
            if is_from && toks.get(j) == Some(&Tok::Punct(',')) {
                j += 1;
            } else {
                break;
            }
        }
        i = j.max(i + 1);
    }
    tables.sort();
    tables.dedup();
    tables
}

/// FNV-1a: a stable 64-bit hash (the same in every gateway process and version).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64 finalizer: spreads `key ^ node` over all 64 bits before comparing scores.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        loads: Vec<usize>,
        weights: Vec<u32>,
    }

    impl NodeLoads for Fake {
        fn in_flight(&self, i: usize) -> usize {
            self.loads[i]
        }
        fn weight(&self, i: usize) -> u32 {
            self.weights[i]
        }
    }

    fn fake(loads: &[usize], weights: &[u32]) -> Fake {
        Fake {
            loads: loads.to_vec(),
            weights: weights.to_vec(),
        }
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves_by_weight() {
        let b = Balancer::new(Policy::Weighted, &["a", "b", "c"]);
        let nodes = fake(&[0, 0, 0], &[5, 1, 1]);
        let picks: Vec<usize> = (0..7)
            .filter_map(|_| b.pick(&nodes, &[0, 1, 2], 0))
            .collect();
        // nginx's example: a a b a c a a — never five a's in a row.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        // A node out of rotation is skipped; the others keep their ratio.
        let picks: Vec<usize> = (0..12).filter_map(|_| b.pick(&nodes, &[0, 2], 0)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 10);
    }

    #[test]
    fn least_outstanding_prefers_idle_and_spreads_ties() {
        let b = Balancer::new(Policy::LeastOutstanding, &["a", "b", "c"]);
        assert_eq!(
            b.pick(&fake(&[3, 0, 2], &[1, 1, 1]), &[0, 1, 2], 0),
            Some(1)
        );
        assert_eq!(b.pick(&fake(&[3, 4, 2], &[1, 1, 1]), &[0, 1], 0), Some(0));
        let idle = fake(&[0, 0, 0], &[1, 1, 1]);
        let mut seen: Vec<usize> = (0..3)
            .filter_map(|_| b.pick(&idle, &[0, 1, 2], 0))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2]);
    }

    #[test]
    fn affinity_is_stable_moves_only_the_lost_nodes_keys_and_bounds_load() {
        let addrs = ["n0:1", "n1:1", "n2:1", "n3:1"];
        let b = Balancer::new(Policy::CacheAffinity, &addrs);
        let idle = fake(&[0; 4], &[1; 4]);
        let all = [0, 1, 2, 3];
        let mut per_node = [0; 4];
        for key in 0..1000u64 {
            let k = fnv1a(&key.to_le_bytes());
            let first = b.pick(&idle, &all, k);
            assert_eq!(first, b.pick(&idle, &all, k));
            let Some(first) = first else { continue };
            per_node[first] += 1;
            let without_2 = b.pick(&idle, &[0, 1, 3], k);
            if first != 2 {
                assert_eq!(without_2, Some(first));
            }
        }
        assert!(per_node.iter().all(|&c| c > 150), "{per_node:?}");
        // The preferred node is overloaded: the key goes elsewhere.
        let k = fnv1a(b"hot");
        let Some(pref) = b.pick(&idle, &all, k) else {
            return;
        };
        let mut loads = vec![0; 4];
        loads[pref] = 10;
        let busy = fake(&loads, &[1; 4]);
        assert_ne!(b.pick(&busy, &all, k), Some(pref));
    }

    #[test]
    fn finds_tables_in_statements() {
        let t = |sql: &str| tables_in_sql(sql);
        assert_eq!(t("SELECT * FROM logs WHERE level = 'ERROR'"), vec!["logs"]);
        assert_eq!(
            t("select count(*) from Logs l join services s on l.service = s.service"),
            vec!["logs", "services"]
        );
        assert_eq!(
            t("SELECT a FROM \"My Table\" AS t, other o WHERE x IN (SELECT y FROM third)"),
            vec!["My Table", "other", "third"]
        );
        assert_eq!(
            t("SELECT 'from fake' FROM public.logs -- from nothing\n LIMIT 1"),
            vec!["public.logs"]
        );
        assert_eq!(t("SELECT 1"), Vec::<String>::new());
        assert_eq!(t("SELECT * FROM (SELECT * FROM logs) sub"), vec!["logs"]);
    }

    #[test]
    fn affinity_key_ignores_filters_but_not_tenant_or_tables() {
        let a = affinity_key(
            Some("acme"),
            "SELECT * FROM logs WHERE ts > now() - interval '1 hour'",
        );
        let b = affinity_key(
            Some("acme"),
            "select count(*) from LOGS where level='ERROR'",
        );
        let c = affinity_key(Some("other"), "SELECT * FROM logs");
        let d = affinity_key(Some("acme"), "SELECT * FROM services");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(
            affinity_key(None, "SELECT  1"),
            affinity_key(None, "select 1")
        );
    }
}
