//! Statistics over measurement rounds and samples. Non-finite values (a ratio to a zero-ns
//! baseline, a run that measured nothing) never count: they would turn a median into noise.
use std::borrow::Borrow;

use serde::Serialize;

fn finite<T: Borrow<f64>>(v: impl IntoIterator<Item = T>) -> Vec<f64> {
    v.into_iter().map(|x| *x.borrow()).filter(|x| x.is_finite()).collect()
}

/// The median of the finite values; NaN when there is none.
pub fn median<T: Borrow<f64>>(v: impl IntoIterator<Item = T>) -> f64 {
    let mut s = finite(v);
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The smallest and largest finite values; NaN when there is none.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .filter(|x| x.is_finite())
        .fold((f64::NAN, f64::NAN), |(lo, hi), x| (lo.min(*x), hi.max(*x)))
}

/// Per-round ratios `num[i] / den[i]`: a ratio taken within a round cancels the drift that
/// separates rounds; its median over the rounds is what the suites report.
pub fn ratios(num: &[f64], den: &[f64]) -> Vec<f64> {
    num.iter().zip(den).map(|(a, b)| a / b).collect()
}

/// Bounds of x / base when both are whole-ns truncations of the true values.
pub fn ratio_bounds(x: f64, base: f64) -> [f64; 2] {
    [x / (base + 1.0), (x + 1.0) / base.max(1.0)]
}

/// One quantity over the rounds: the median (reported) and the spread (for judging noise).
#[derive(Serialize, Clone)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: Vec<f64>,
}

impl Stat {
    pub fn of(v: Vec<f64>) -> Stat {
        let (min, max) = min_max(&v);
        Stat {
            median: median(&v),
            min,
            max,
            rounds: v,
        }
    }

    /// Relative spread (max - min) / median, in percent.
    pub fn spread_pct(&self) -> f64 {
        (self.max - self.min) / self.median * 100.0
    }
}

/// The p-quantile of ascending `sorted`, as the daemon computes it: `sorted[round((n-1) p)]`.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50 / p99 / max of a sample, for the JSON.
#[derive(Serialize, Clone, Copy)]
pub struct Pcts {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Pcts {
    pub fn of(v: &[f64]) -> Pcts {
        let mut s = finite(v);
        s.sort_by(f64::total_cmp);
        Pcts {
            count: s.len(),
            p50: quantile(&s, 0.5),
            p99: quantile(&s, 0.99),
            max: s.last().copied().unwrap_or(f64::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_quantiles_and_spreads() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].iter()), 2.5);
        assert_eq!(median([f64::NAN, 1.0, f64::INFINITY]), 1.0);
        assert!(median(Vec::<f64>::new()).is_nan());
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.99)), (51.0, 99.0));
        assert_eq!(min_max(&[2.0, f64::NAN, 1.0, 3.0]), (1.0, 3.0));
        let s = Stat::of(vec![9.0, 10.0, 11.0]);
        assert_eq!((s.median, s.min, s.max, s.spread_pct()), (10.0, 9.0, 11.0, 20.0));
        let r = ratios(&[10.0, 22.0, 30.0, 5.0], &[10.0, 20.0, 0.0, 5.0]);
        assert_eq!(r[..2], [1.0, 1.1]);
        assert!(r[2].is_infinite());
        // The zero-ns round does not count; the median of 1.0, 1.1, 1.0 is 1.0.
        assert_eq!(median(&r), 1.0);
        let p = Pcts::of(&v);
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 51.0, 99.0, 100.0));
    }
}
