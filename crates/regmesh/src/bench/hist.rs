//! A fixed-size log-linear latency histogram: no allocation while recording,
//! about 3% relative precision (32 sub-buckets per power of two).

/// Sub-buckets per power of two.
const SUB: u64 = 32;
const SUB_BITS: u32 = 5;
/// Buckets: enough for values up to 2^40 µs.
const BUCKETS: usize = (41 * SUB) as usize;

/// Latencies in microseconds.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        let sub = (v >> shift) & (SUB - 1);
        let i = (u64::from(shift) + 1) * SUB + sub;
        (i as usize).min(BUCKETS - 1)
    }

    /// Lower bound of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = i / SUB - 1;
        let sub = i % SUB;
        (SUB + sub) << shift
    }

    pub(crate) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in µs: the lower bound of its
    /// bucket (the exact maximum for q = 1); 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_precision() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.04, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.04, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn bucket_lower_bounds_are_monotonic() {
        let mut last = 0;
        for v in [0u64, 1, 31, 32, 33, 63, 64, 65, 1000, 1 << 20, 1 << 39] {
            let i = Histogram::index(v);
            assert!(Histogram::value(i) <= v, "{v}");
            assert!(i >= last);
            last = i;
        }
    }
}
