//! Latency summaries: percentiles over a sorted vector of samples (exact, which is all an
//! HDR histogram approximates), medians and geometric means.

use std::time::Duration;

/// Samples of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: bool,
    values: Vec<Duration>,
}

impl Samples {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a sample.
    pub fn push(&mut self, d: Duration) {
        self.values.push(d);
        self.sorted = false;
    }

    /// Add every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.values.extend_from_slice(&other.values);
        self.sorted = false;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// No samples yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `q`-quantile (0 ≤ q ≤ 1, nearest rank); `None` without samples.
    pub fn quantile(&mut self, q: f64) -> Option<Duration> {
        if self.values.is_empty() {
            return None;
        }
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
        let rank = (q.clamp(0.0, 1.0) * self.values.len() as f64).ceil() as usize;
        Some(self.values[rank.saturating_sub(1).min(self.values.len() - 1)])
    }

    /// The median.
    pub fn median(&mut self) -> Option<Duration> {
        self.quantile(0.5)
    }
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Geometric mean of positive values; `None` if there are none.
pub fn geomean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        if v > 0.0 && v.is_finite() {
            sum += v.ln();
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64).exp())
}

/// A duration in milliseconds, with precision that suits its size.
pub fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_string(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// A ratio like `1.23x`.
pub fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_string(),
        Some(v) if v < 10.0 => format!("{v:.2}x"),
        Some(v) => format!("{v:.1}x"),
    }
}

/// A count with thousands separators.
pub fn fmt_count(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as KB / MB / GB (powers of 1000, as throughput figures usually are).
pub fn fmt_bytes(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_string(),
        Some(v) if v < 1e3 => format!("{v:.0} B"),
        Some(v) if v < 1e6 => format!("{:.1} KB", v / 1e3),
        Some(v) if v < 1e9 => format!("{:.1} MB", v / 1e6),
        Some(v) => format!("{:.2} GB", v / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_means() {
        let mut s = Samples::new();
        for i in 1..=100 {
            s.push(Duration::from_millis(i));
        }
        assert_eq!(s.median(), Some(Duration::from_millis(50)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(Samples::new().median(), None);
        let g = geomean([1.0, 100.0]).expect("values");
        assert!((g - 10.0).abs() < 1e-9);
        assert_eq!(fmt_count(1234567.0), "1,234,567");
        assert_eq!(fmt_count(12.0), "12");
    }
}
