//! The two non-uniform distributions the workload needs, small enough to read in a minute
//! (so the generator does not depend on `rand_distr`'s release cycle).
//!
//! * [`Zipf`]: rank `k` in `0..n` is drawn with probability proportional to `1 / (k + 1)^s`.
//!   Exact inverse-CDF sampling: the cumulative weights are tabulated once (8 bytes per value,
//!   8 MB for the 1M users) and each draw is one binary search.
//! * [`LogNormal`]: `exp(mu + sigma * z)` with `z` standard normal from the Box-Muller transform.

use rand::Rng;

/// Zipf distribution over ranks `0..n` (rank 0 is the most frequent).
#[derive(Debug, Clone)]
pub struct Zipf {
    /// `cdf[k]` = sum of the weights of ranks `0..=k`.
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` ranks with exponent `s` (s = 1 is the classic 1/k law). `n` must be at least 1.
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut acc = 0.0;
        for k in 0..n.max(1) {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(acc);
        }
        Self { cdf }
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: a distribution has at least one rank.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of rank `k`.
    pub fn probability(&self, k: usize) -> f64 {
        let total = self.cdf[self.cdf.len() - 1];
        let lo = if k == 0 { 0.0 } else { self.cdf[k - 1] };
        (self.cdf[k] - lo) / total
    }

    /// Draw a rank.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let total = self.cdf[self.cdf.len() - 1];
        let u = rng.random::<f64>() * total;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// Log-normal distribution: the logarithm of a draw is normal with mean `mu`, std dev `sigma`.
#[derive(Debug, Clone, Copy)]
pub struct LogNormal {
    mu: f64,
    sigma: f64,
}

impl LogNormal {
    /// A log-normal whose median is `median` (= e^mu) with log-space spread `sigma`.
    pub fn with_median(median: f64, sigma: f64) -> Self {
        Self {
            mu: median.ln(),
            sigma,
        }
    }

    /// Draw a value (always positive).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        (self.mu + self.sigma * standard_normal(rng)).exp()
    }
}

/// One standard normal draw (Box-Muller; the second value of the pair is discarded, which
/// keeps the sampler stateless at the price of one extra `ln`/`sqrt` per draw).
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn zipf_frequencies_follow_the_law() {
        let z = Zipf::new(100, 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 100];
        let n = 200_000;
        for _ in 0..n {
            counts[z.sample(&mut rng)] += 1;
        }
        for k in [0, 1, 9, 99] {
            let expected = z.probability(k);
            let got = counts[k] as f64 / n as f64;
            assert!(
                (got - expected).abs() < 0.15 * expected + 0.001,
                "rank {k}: expected {expected}, got {got}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
    }

    #[test]
    fn lognormal_median_is_close() {
        let d = LogNormal::with_median(25.0, 0.9);
        let mut rng = StdRng::seed_from_u64(2);
        let mut v: Vec<f64> = (0..50_001).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!((median - 25.0).abs() < 1.5, "median {median}");
        assert!(v[0] > 0.0);
    }
}
