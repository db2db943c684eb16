//! Segment pruning from the manifest, before any file is opened.
//!
//! The filters DataFusion pushes into a scan are read for three kinds of facts:
//! - **time range** on the table's time column (`ts >= X`, `ts < Y`, `BETWEEN`, `=`),
//!   compared with each segment's `min_ts`/`max_ts`;
//! - **shard-key equality** (`host = 'h1'`, `host IN (..)`, `OR`s of those): the literal is
//!   hashed onto the shard ring exactly as ingest does, so only that shard's segments and
//!   WAL entries are read;
//! - **simple column comparisons** (`col = lit`, `<`, `<=`, `>`, `>=`) checked against the
//!   segment's min/max statistics.
//!
//! Anything else is left to the Parquet reader (row-group statistics, page index, bloom
//! filters) and to the filter above the scan, so pruning here only ever needs to be
//! conservative: a segment is dropped only when no row in it can match.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use strata_common::{HashRing, hash_key_column};
use strata_storage::segment::to_micros;
use strata_storage::{SegmentMeta, TableDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl Cmp {
    fn from_op(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::Eq => Cmp::Eq,
            Operator::Lt => Cmp::Lt,
            Operator::LtEq => Cmp::LtEq,
            Operator::Gt => Cmp::Gt,
            Operator::GtEq => Cmp::GtEq,
            _ => return None,
        })
    }

    /// The same comparison with its operands swapped (`5 < x` is `x > 5`).
    fn flipped(self) -> Self {
        match self {
            Cmp::Eq => Cmp::Eq,
            Cmp::Lt => Cmp::Gt,
            Cmp::LtEq => Cmp::GtEq,
            Cmp::Gt => Cmp::Lt,
            Cmp::GtEq => Cmp::LtEq,
        }
    }
}

/// `column <cmp> value`.
#[derive(Debug, Clone)]
struct ColumnPredicate {
    column: String,
    cmp: Cmp,
    value: ScalarValue,
}

/// What the filters of one scan say about which segments and shards can match.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScanPruning {
    /// Inclusive bounds on the time column, in microseconds.
    time_lo: Option<i64>,
    time_hi: Option<i64>,
    /// Shards that can hold matching rows; `None`: all.
    shards: Option<BTreeSet<u32>>,
    predicates: Vec<ColumnPredicate>,
}

impl ScanPruning {
    /// Read the facts out of `filters` (which are ANDed).
    pub(crate) fn analyze(def: &TableDef, filters: &[Expr]) -> Self {
        let mut p = Self::default();
        let mut ring: Option<HashRing> = None;
        for e in filters.iter().flat_map(split_conjunction) {
            for pred in comparisons(e) {
                if def.time_column.as_deref() == Some(pred.column.as_str()) {
                    p.add_time_bound(&pred);
                }
                if def.shard_key.as_deref() == Some(pred.column.as_str()) && pred.cmp == Cmp::Eq {
                    let shards = shards_of(
                        def,
                        &def.schema,
                        std::slice::from_ref(&pred.value),
                        &mut ring,
                    );
                    p.restrict_shards(shards);
                }
                p.predicates.push(pred);
            }
            if let Some(key) = &def.shard_key
                && !matches!(
                    e,
                    Expr::BinaryExpr(BinaryExpr {
                        op: Operator::Eq,
                        ..
                    })
                )
                && let Some(values) = equality_values(e, key)
            {
                let shards = shards_of(def, &def.schema, &values, &mut ring);
                p.restrict_shards(shards);
            }
        }
        p
    }

    /// Narrow the time range to rows at or after `micros` (retention).
    pub(crate) fn require_time_at_least(&mut self, micros: i64) {
        self.time_lo = Some(self.time_lo.map_or(micros, |lo| lo.max(micros)));
    }

    /// True if rows of `shard` can match.
    pub(crate) fn keep_shard(&self, shard: u32) -> bool {
        self.shards.as_ref().is_none_or(|s| s.contains(&shard))
    }

    /// True if `seg` can hold a matching row.
    pub(crate) fn keep_segment(&self, seg: &SegmentMeta, schema: &Schema) -> bool {
        if !self.keep_shard(seg.shard) {
            return false;
        }
        if let (Some(lo), Some(max)) = (self.time_lo, seg.max_ts)
            && max < lo
        {
            return false;
        }
        if let (Some(hi), Some(min)) = (self.time_hi, seg.min_ts)
            && min > hi
        {
            return false;
        }
        self.predicates
            .iter()
            .all(|p| keep_by_stats(p, seg, schema))
    }

    fn add_time_bound(&mut self, pred: &ColumnPredicate) {
        let Some((v, unit)) = timestamp_value(&pred.value) else {
            return;
        };
        // Bounds are computed in the literal's unit, then floored to microseconds, which
        // keeps them conservative (the manifest's min/max are floored the same way).
        let lo = |v: i64| to_micros(v, unit);
        match pred.cmp {
            Cmp::Eq => {
                self.set_lo(lo(v));
                self.set_hi(lo(v));
            }
            Cmp::Gt => self.set_lo(lo(v.saturating_add(1))),
            Cmp::GtEq => self.set_lo(lo(v)),
            Cmp::Lt => self.set_hi(lo(v.saturating_sub(1))),
            Cmp::LtEq => self.set_hi(lo(v)),
        }
    }

    fn set_lo(&mut self, v: i64) {
        self.time_lo = Some(self.time_lo.map_or(v, |lo| lo.max(v)));
    }

    fn set_hi(&mut self, v: i64) {
        self.time_hi = Some(self.time_hi.map_or(v, |hi| hi.min(v)));
    }

    fn restrict_shards(&mut self, shards: Option<BTreeSet<u32>>) {
        let Some(new) = shards else {
            return;
        };
        self.shards = Some(match self.shards.take() {
            Some(old) => old.intersection(&new).copied().collect(),
            None => new,
        });
    }
}

/// `col <op> literal` facts in `e` (a single conjunct), including both halves of BETWEEN.
fn comparisons(e: &Expr) -> Vec<ColumnPredicate> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Some(cmp) = Cmp::from_op(*op) else {
                return vec![];
            };
            match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) if !v.is_null() => vec![ColumnPredicate {
                    column: c.name.clone(),
                    cmp,
                    value: v.clone(),
                }],
                (Expr::Literal(v, _), Expr::Column(c)) if !v.is_null() => vec![ColumnPredicate {
                    column: c.name.clone(),
                    cmp: cmp.flipped(),
                    value: v.clone(),
                }],
                _ => vec![],
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (expr.as_ref(), low.as_ref(), high.as_ref()) {
            (Expr::Column(c), Expr::Literal(lo, _), Expr::Literal(hi, _))
                if !lo.is_null() && !hi.is_null() =>
            {
                vec![
                    ColumnPredicate {
                        column: c.name.clone(),
                        cmp: Cmp::GtEq,
                        value: lo.clone(),
                    },
                    ColumnPredicate {
                        column: c.name.clone(),
                        cmp: Cmp::LtEq,
                        value: hi.clone(),
                    },
                ]
            }
            _ => vec![],
        },
        _ => vec![],
    }
}

/// The literal values `column` must equal for `e` to hold (`=`, `IN`, `OR` of those).
fn equality_values(e: &Expr, column: &str) -> Option<Vec<ScalarValue>> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                if c.name == column =>
            {
                Some(vec![v.clone()])
            }
            _ => None,
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut l = equality_values(left, column)?;
            l.extend(equality_values(right, column)?);
            Some(l)
        }
        Expr::InList(in_list) if !in_list.negated => match in_list.expr.as_ref() {
            Expr::Column(c) if c.name == column => in_list
                .list
                .iter()
                .map(|v| match v {
                    Expr::Literal(v, _) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        _ => None,
    }
}

/// The shards holding rows whose shard key is one of `values`; `None` if unknown.
fn shards_of(
    def: &TableDef,
    schema: &Schema,
    values: &[ScalarValue],
    ring: &mut Option<HashRing>,
) -> Option<BTreeSet<u32>> {
    let key = def.shard_key.as_ref()?;
    let key_type = schema.field_with_name(key).ok()?.data_type().clone();
    let ring = ring.get_or_insert_with(|| HashRing::for_shards(def.num_shards));
    let mut out = BTreeSet::new();
    for v in values {
        if v.is_null() {
            continue; // `key = NULL` matches nothing
        }
        let arr = v.to_array_of_size(1).ok()?;
        let arr = if arr.data_type() == &key_type {
            arr
        } else {
            arrow::compute::cast(&arr, &key_type).ok()?
        };
        if arr.is_null(0) {
            return None;
        }
        let hash = *hash_key_column(&arr).ok()?.first()?;
        out.insert(ring.lookup(hash)?);
    }
    Some(out)
}

fn timestamp_value(v: &ScalarValue) -> Option<(i64, TimeUnit)> {
    match v {
        ScalarValue::TimestampSecond(Some(v), _) => Some((*v, TimeUnit::Second)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some((*v, TimeUnit::Millisecond)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some((*v, TimeUnit::Microsecond)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some((*v, TimeUnit::Nanosecond)),
        _ => None,
    }
}

fn keep_by_stats(p: &ColumnPredicate, seg: &SegmentMeta, schema: &Schema) -> bool {
    let Ok(field) = schema.field_with_name(&p.column) else {
        return true;
    };
    let Some(stats) = seg.columns.get(&p.column) else {
        return true;
    };
    let (Some(min), Some(max)) = (&stats.min, &stats.max) else {
        return true;
    };
    let (Some(min), Some(max)) = (
        compare_json(min, &p.value, field.data_type()),
        compare_json(max, &p.value, field.data_type()),
    ) else {
        return true;
    };
    match p.cmp {
        Cmp::Eq => min != Ordering::Greater && max != Ordering::Less,
        Cmp::Lt => min == Ordering::Less,
        Cmp::LtEq => min != Ordering::Greater,
        Cmp::Gt => max == Ordering::Greater,
        Cmp::GtEq => max != Ordering::Less,
    }
}

/// How a JSON statistic of a column of type `column` compares with `lit`, if comparable.
pub(crate) fn compare_json(
    stat: &serde_json::Value,
    lit: &ScalarValue,
    column: &DataType,
) -> Option<Ordering> {
    use ScalarValue as S;
    let int = |x: i64| stat.as_i64().map(|s| s.cmp(&x));
    let uint = |x: u64| stat.as_u64().map(|s| s.cmp(&x));
    let float = |x: f64| stat.as_f64().and_then(|s| s.partial_cmp(&x));
    let string = |x: &str| stat.as_str().map(|s| s.cmp(x));
    match (lit, column) {
        (S::Int8(Some(x)), c) if c.is_integer() => int(i64::from(*x)),
        (S::Int16(Some(x)), c) if c.is_integer() => int(i64::from(*x)),
        (S::Int32(Some(x)), c) if c.is_integer() => int(i64::from(*x)),
        (S::Int64(Some(x)), c) if c.is_integer() => int(*x),
        (S::UInt8(Some(x)), c) if c.is_integer() => uint(u64::from(*x)),
        (S::UInt16(Some(x)), c) if c.is_integer() => uint(u64::from(*x)),
        (S::UInt32(Some(x)), c) if c.is_integer() => uint(u64::from(*x)),
        (S::UInt64(Some(x)), c) if c.is_integer() => uint(*x),
        (S::Float32(Some(x)), DataType::Float32 | DataType::Float64) => float(f64::from(*x)),
        (S::Float64(Some(x)), DataType::Float32 | DataType::Float64) => float(*x),
        (
            S::Utf8(Some(x)) | S::Utf8View(Some(x)) | S::LargeUtf8(Some(x)),
            DataType::Utf8 | DataType::Utf8View,
        ) => string(x),
        (S::Date32(Some(x)), DataType::Date32) => int(i64::from(*x)),
        (_, DataType::Timestamp(unit, _)) => match timestamp_value(lit) {
            Some((x, u)) if u == *unit => int(x),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests;
