//! Choosing the symbols a client subscribes to: uniformly, or Zipf-skewed over the order of
//! the gateway's `list` reply (rank 1 = the first symbol), `P(rank r) ∝ 1 / r^1.1` — a few
//! symbols are on almost every dashboard, most on few. Plain logic with the RNG passed in.

use std::fmt;

/// Exponent of the Zipf distribution of `--pick zipf`.
pub const ZIPF_EXPONENT: f64 = 1.1;

/// How symbols are picked.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// Every symbol equally likely.
    #[default]
    Uniform,
    /// Zipf (exponent 1.1) over the list order.
    Zipf,
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pick::Uniform => "uniform",
            Pick::Zipf => "zipf",
        })
    }
}

/// Draws symbol ids in `offset..offset + n`.
#[derive(Clone, Debug)]
pub struct Picker {
    n: u32,
    /// Added to every id drawn (`--symbol-range`).
    offset: u32,
    /// Zipf: cumulative probabilities by rank (`cdf[i]` = P(rank ≤ i + 1)); empty for
    /// uniform.
    cdf: Vec<f64>,
}

impl Picker {
    /// A picker over `n` symbols (`n ≥ 1`).
    pub fn new(pick: Pick, n: usize) -> Picker {
        let n = n.clamp(1, u32::MAX as usize);
        let cdf = match pick {
            Pick::Uniform => Vec::new(),
            Pick::Zipf => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=n)
                    .map(|r| {
                        acc += 1.0 / (r as f64).powf(ZIPF_EXPONENT);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                cdf
            }
        };
        Picker { n: n as u32, offset: 0, cdf }
    }

    /// The same picker over ids `offset..offset + n` (a slice of the universe).
    pub fn shifted(mut self, offset: u32) -> Picker {
        self.offset = offset;
        self
    }

    /// One symbol id.
    pub fn one(&self, rng: &mut fastrand::Rng) -> u32 {
        if self.cdf.is_empty() {
            return self.offset + rng.u32(0..self.n);
        }
        let u = rng.f64();
        self.offset + (self.cdf.partition_point(|&c| c < u) as u32).min(self.n - 1)
    }

    /// `k` distinct symbol ids (`k` is capped at `n`), in the order drawn. Zipf draws
    /// repeat often near the head, so after a bounded number of tries the rest is filled
    /// with the lowest unused ids (the most likely ones).
    pub fn distinct(&self, k: usize, rng: &mut fastrand::Rng) -> Vec<u32> {
        let k = k.min(self.n as usize);
        let mut out: Vec<u32> = Vec::with_capacity(k);
        let mut tries = 0usize;
        while out.len() < k && tries < 64 * k + 64 {
            tries += 1;
            let s = self.one(rng);
            if !out.contains(&s) {
                out.push(s);
            }
        }
        let mut next = self.offset;
        while out.len() < k {
            if !out.contains(&next) {
                out.push(next);
            }
            next += 1;
        }
        out
    }

    /// A symbol not satisfying `held`, or `None` after a bounded number of tries.
    pub fn other(&self, rng: &mut fastrand::Rng, held: impl Fn(u32) -> bool) -> Option<u32> {
        (0..256).map(|_| self.one(rng)).find(|&s| !held(s))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn distinct_and_in_range() {
        for pick in [Pick::Uniform, Pick::Zipf] {
            let p = Picker::new(pick, 100);
            let mut rng = fastrand::Rng::with_seed(7);
            for k in [1usize, 10, 50, 100, 150] {
                let v = p.distinct(k, &mut rng);
                assert_eq!(v.len(), k.min(100), "{pick} {k}");
                let mut s = v.clone();
                s.sort_unstable();
                s.dedup();
                assert_eq!(s.len(), v.len());
                assert!(v.iter().all(|&x| x < 100));
            }
        }
    }

    #[test]
    fn zipf_is_skewed_to_the_head() {
        let p = Picker::new(Pick::Zipf, 1000);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[p.one(&mut rng) as usize] += 1;
        }
        // P(rank 1) = 1 / H(1000, 1.1) ≈ 0.17; rank 2 ≈ 0.08.
        assert!((14_000..20_000).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[999]);
        let u = Picker::new(Pick::Uniform, 1000);
        let mut c0 = 0;
        for _ in 0..100_000 {
            c0 += u32::from(u.one(&mut rng) == 0);
        }
        assert!(c0 < 300, "{c0}");
    }
}
