//! Whether two runs of a cell differ, from their raw samples, the way Chromium's Pinpoint
//! decides: two rank tests (Mann–Whitney U and Kolmogorov–Smirnov, two-sided) give a p-value
//! (the smaller of the two); at or below the low threshold α = 0.01 the runs are DIFFERENT;
//! above a high threshold they are the SAME; in between the samples cannot tell (UNKNOWN) and
//! more repetitions are needed.
//!
//! The high threshold falls as the samples grow: it is the p-value that a real change of the
//! minimum effect would exceed only 1% of the time (the power, 0.99), so a p-value above it
//! rules such a change out. Pinpoint tabulates it by simulation; here it comes from the normal
//! approximation of the rank-sum statistic under a location shift of the minimum effect, in
//! units of the samples' own spread (IQR / 1.349, robust to outliers). A change smaller than
//! the minimum effect (3% of the old median by default, set per spec) is never reported, even
//! when the tests find it.

use serde::Serialize;

/// What the samples say about two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No change of the minimum effect or more.
    Same,
    /// A change of at least the minimum effect, at significance α.
    Different,
    /// The samples cannot tell yet: run more repetitions.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::Different => "different",
            Verdict::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a verdict must be, and what size of change matters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Policy {
    /// The low threshold: p ≤ `alpha` is DIFFERENT.
    pub alpha: f64,
    /// Relative change of the median below which nothing is reported (0.03 = 3%).
    pub min_effect: f64,
    /// How rarely a real change of `min_effect` may be called SAME: 0.99 → 1% of the time.
    pub power: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            alpha: 0.01,
            min_effect: 0.03,
            power: 0.99,
        }
    }
}

/// Two runs compared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub verdict: Verdict,
    /// The smaller of the two tests' p-values.
    pub p_value: f64,
    pub mann_whitney_p: f64,
    pub kolmogorov_smirnov_p: f64,
    /// The thresholds the p-value was held against.
    pub low_threshold: f64,
    pub high_threshold: f64,
    /// new median / old median − 1 (positive: the new run is slower).
    pub change: f64,
}

/// Compares the samples of an old and a new run.
///
/// With fewer than two samples on either side nothing can be said: UNKNOWN with p = 1.
pub fn compare(old: &[f64], new: &[f64], policy: Policy) -> Comparison {
    let old_median = median(old);
    let change = if old_median > 0.0 {
        median(new) / old_median - 1.0
    } else {
        0.0
    };
    if old.len() < 2 || new.len() < 2 {
        return Comparison {
            verdict: Verdict::Unknown,
            p_value: 1.0,
            mann_whitney_p: 1.0,
            kolmogorov_smirnov_p: 1.0,
            low_threshold: policy.alpha,
            high_threshold: 1.0,
            change,
        };
    }
    let mann_whitney_p = mann_whitney_u(old, new);
    let kolmogorov_smirnov_p = kolmogorov_smirnov(old, new);
    let p_value = mann_whitney_p.min(kolmogorov_smirnov_p);
    let spread = (iqr(old) + iqr(new)) / 2.0 / 1.349;
    let shift = if spread > 0.0 {
        policy.min_effect * old_median.abs() / spread
    } else {
        f64::INFINITY
    };
    let high_threshold = high_threshold(old.len(), new.len(), shift, policy).max(policy.alpha);
    let verdict = if p_value <= policy.alpha {
        // found, but smaller than anything worth reporting
        if change.abs() < policy.min_effect {
            Verdict::Same
        } else {
            Verdict::Different
        }
    } else if p_value > high_threshold {
        Verdict::Same
    } else {
        Verdict::Unknown
    };
    Comparison {
        verdict,
        p_value,
        mann_whitney_p,
        kolmogorov_smirnov_p,
        low_threshold: policy.alpha,
        high_threshold,
        change,
    }
}

/// Many cells compared at once for one shift they share: a build (or an agent) that got
/// slower is slower in every cell it runs, and no single cell's samples may resolve it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pooled {
    pub verdict: Verdict,
    /// How many comparisons (cells) were pooled.
    pub strata: usize,
    /// The standardized statistic: positive when the new samples are larger (slower).
    pub z: f64,
    /// Two-sided p-value of van Elteren's test.
    pub p_value: f64,
    pub low_threshold: f64,
    pub high_threshold: f64,
    /// The typical cell's change: the median over the strata of new median / old median, − 1.
    pub change: f64,
    /// A distribution-free interval for it at confidence 1 − α (order statistics of the
    /// strata's changes).
    pub change_low: f64,
    pub change_high: f64,
}

/// van Elteren's stratified rank-sum test over `strata` of (old, new) samples: each stratum's
/// Wilcoxon rank sum of the new samples, centred, weighted by 1/(N + 1) (the locally most
/// powerful weights for one shift shared by every stratum) and summed; normal approximation,
/// with each stratum's tie correction. The verdict follows [`compare`]'s rules, the high
/// threshold from the pooled statistic's expected value under a shift of the minimum effect.
/// A change found is SAME when it is shown to be smaller than the minimum effect: its interval
/// stops short of it. (A point estimate alone would miss a real step of exactly the minimum
/// effect on every other night; the interval keeps the filter from hiding what the samples
/// cannot rule out, while α alone decides whether anything changed.) Strata with fewer than
/// two samples on a side carry nothing and are left out.
pub fn compare_pooled(strata: &[(&[f64], &[f64])], policy: Policy) -> Pooled {
    let (mut centred, mut var, mut expected) = (0.0, 0.0, 0.0);
    let mut changes = Vec::new();
    for (old, new) in strata.iter().filter(|(o, n)| o.len() >= 2 && n.len() >= 2) {
        let (n, m) = (new.len() as f64, old.len() as f64);
        let total = n + m;
        let w = 1.0 / (total + 1.0);
        let ranked = ranks(new, old);
        let rank_sum: f64 = ranked.ranks[..new.len()].iter().sum();
        centred += w * (rank_sum - n * (total + 1.0) / 2.0);
        var += w * w * n * m / 12.0 * ((total + 1.0) - ranked.tie_term / (total * (total - 1.0)));
        let old_median = median(old);
        let spread = (iqr(old) + iqr(new)) / 2.0 / 1.349;
        let theta = if spread > 0.0 {
            normal_cdf(policy.min_effect * old_median.abs() / spread / std::f64::consts::SQRT_2)
        } else {
            1.0
        };
        expected += w * n * m * (theta - 0.5);
        if old_median > 0.0 {
            changes.push(median(new) / old_median);
        }
    }
    let change = if changes.is_empty() {
        0.0
    } else {
        median(&changes) - 1.0
    };
    let (change_low, change_high) = median_interval(&mut changes, policy.alpha);
    if var <= 0.0 {
        return Pooled {
            verdict: Verdict::Unknown,
            strata: changes.len(),
            z: 0.0,
            p_value: 1.0,
            low_threshold: policy.alpha,
            high_threshold: 1.0,
            change,
            change_low,
            change_high,
        };
    }
    let sd = var.sqrt();
    let z = centred / sd;
    let p_value = (2.0 * (1.0 - normal_cdf(z.abs()))).min(1.0);
    let beyond = expected / sd - normal_quantile(policy.power);
    let high_threshold = if beyond <= 0.0 {
        1.0
    } else {
        (2.0 * (1.0 - normal_cdf(beyond))).max(policy.alpha)
    };
    let reaches = if z > 0.0 {
        change_high >= policy.min_effect
    } else {
        change_low <= -policy.min_effect
    };
    let verdict = if p_value <= policy.alpha {
        if reaches {
            Verdict::Different
        } else {
            Verdict::Same
        }
    } else if p_value > high_threshold {
        Verdict::Same
    } else {
        Verdict::Unknown
    };
    Pooled {
        verdict,
        strata: changes.len(),
        z,
        p_value,
        low_threshold: policy.alpha,
        high_threshold,
        change,
        change_low,
        change_high,
    }
}

/// The order statistics around the median of `ratios` that hold it with confidence 1 − α (the
/// binomial sign-test interval, normal approximation), as changes (ratio − 1); (0, 0) for none.
fn median_interval(ratios: &mut [f64], alpha: f64) -> (f64, f64) {
    if ratios.is_empty() {
        return (0.0, 0.0);
    }
    ratios.sort_by(f64::total_cmp);
    let m = ratios.len() as f64;
    let half_width = normal_quantile(1.0 - alpha / 2.0) * m.sqrt() / 2.0;
    let k = ((m / 2.0 - half_width).floor().max(0.0) as usize).min(ratios.len() - 1);
    (ratios[k] - 1.0, ratios[ratios.len() - 1 - k] - 1.0)
}

/// The p-value a real location shift of `shift` standard deviations would exceed with
/// probability 1 − `power`, for samples of `n` and `m` values (normal approximation of the
/// rank-sum statistic: its mean moves by n·m·(θ − ½), θ = Φ(shift/√2) for normal data).
pub fn high_threshold(n: usize, m: usize, shift: f64, policy: Policy) -> f64 {
    let (n, m) = (n as f64, m as f64);
    let theta = if shift.is_finite() {
        normal_cdf(shift / std::f64::consts::SQRT_2)
    } else {
        1.0
    };
    let sd = (n * m * (n + m + 1.0) / 12.0).sqrt();
    let expected_z = n * m * (theta - 0.5) / sd;
    let z = expected_z - normal_quantile(policy.power);
    if z <= 0.0 {
        1.0
    } else {
        2.0 * (1.0 - normal_cdf(z))
    }
}

/// Two-sided p-value of the Mann–Whitney U test: exact (the distribution of U counted) for
/// samples without ties of up to 50 each, else the normal approximation with the tie
/// correction and a continuity correction.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    let ranked = ranks(a, b);
    let rank_sum_a: f64 = ranked.ranks[..n].iter().sum();
    let u = rank_sum_a - (n * (n + 1)) as f64 / 2.0;
    let (nf, mf) = (n as f64, m as f64);
    let mean = nf * mf / 2.0;
    if !ranked.ties && n <= 50 && m <= 50 {
        // P(U ≤ u') for u' the lower tail's statistic, doubled
        let lower = u.min(nf * mf - u).round() as usize;
        let counts = u_distribution(n, m);
        let total: f64 = counts.iter().sum();
        let tail: f64 = counts[..=lower].iter().sum();
        return (2.0 * tail / total).min(1.0);
    }
    let total = nf + mf;
    let tie_term = ranked.tie_term / (total * (total - 1.0));
    let var = nf * mf / 12.0 * ((total + 1.0) - tie_term);
    if var <= 0.0 {
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * (1.0 - normal_cdf(z))).min(1.0)
}

/// How many orderings of `n` + `m` distinct values give each U = 0..=n·m.
fn u_distribution(n: usize, m: usize) -> Vec<f64> {
    // f[i][j][u]: ways for i values of a and j of b; the largest value is a's (it beats all j
    // of b: u − j) or b's (u unchanged)
    let max = n * m;
    let mut prev: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; m + 1];
    for row in prev.iter_mut() {
        row[0] = 1.0;
    }
    for _ in 1..=n {
        let mut cur: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; m + 1];
        cur[0][0] = 1.0;
        for j in 1..=m {
            for u in 0..=max {
                let from_a = if u >= j { prev[j][u - j] } else { 0.0 };
                cur[j][u] = from_a + cur[j - 1][u];
            }
        }
        prev = cur;
    }
    prev.swap_remove(m)
}

struct Ranked {
    /// Midranks of `a` then `b`.
    ranks: Vec<f64>,
    ties: bool,
    /// Σ (t³ − t) over groups of tied values.
    tie_term: f64,
}

fn ranks(a: &[f64], b: &[f64]) -> Ranked {
    let mut all: Vec<(f64, usize)> = a.iter().chain(b).copied().zip(0..).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks = vec![0.0; all.len()];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        for &(_, at) in &all[i..j] {
            ranks[at] = rank;
        }
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    Ranked {
        ranks,
        ties: tie_term > 0.0,
        tie_term,
    }
}

/// Two-sided p-value of the two-sample Kolmogorov–Smirnov test: the largest distance between
/// the empirical distribution functions, through the Kolmogorov distribution with Stephens'
/// small-sample correction.
pub fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let ne = (n * m / (n + m)).sqrt();
    kolmogorov_q((ne + 0.12 + 0.11 / ne) * d)
}

/// Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}, the Kolmogorov distribution's upper tail.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = sign * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The median (mean of the middle two for an even count); NaN for no samples.
pub fn median(s: &[f64]) -> f64 {
    quantile(s, 0.5)
}

/// The interquartile range, by linear interpolation between order statistics.
pub fn iqr(s: &[f64]) -> f64 {
    quantile(s, 0.75) - quantile(s, 0.25)
}

fn quantile(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let mut v = s.to_vec();
    v.sort_by(f64::total_cmp);
    let at = q * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// Φ⁻¹(p) by bisection on [`normal_cdf`] (called with a handful of fixed powers).
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    fn normal_samples(seed: &str, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let mut r = reference::rng(7, "compare", seed);
        (0..n)
            .map(|_| mean + sd * reference::normal(&mut r))
            .collect()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn mann_whitney_matches_known_answers() {
        // 5 vs 5, fully separated: the exact two-sided p is 2/252
        let p = mann_whitney_u(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert!(close(p, 2.0 / 252.0, 1e-12), "{p}");
        // interleaved: nothing to see
        let p = mann_whitney_u(&[1.0, 3.0, 5.0, 7.0, 9.0], &[2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(p > 0.6, "{p}");
        // 3 vs 3 with U = 1: P(U ≤ 1) = 2/20, two-sided 0.2
        let p = mann_whitney_u(&[1.0, 2.0, 4.0], &[3.0, 5.0, 6.0]);
        assert!(close(p, 0.2, 1e-12), "{p}");
        // with ties the normal approximation answers, and symmetric in its arguments
        let a = [1.0, 1.0, 2.0, 3.0, 3.0, 4.0];
        let b = [3.0, 4.0, 4.0, 5.0, 6.0, 6.0];
        let p = mann_whitney_u(&a, &b);
        assert!(close(p, mann_whitney_u(&b, &a), 1e-12));
        // by hand: U = 3 of mean 18, tie groups 2, 3, 3, 2 → σ² = 3·(13 − 60/132), so
        // z = (15 − ½)/6.135 = 2.364 and p = 0.0181 (scipy's asymptotic method agrees)
        assert!(close(p, 0.0181, 0.0001), "{p}");
    }

    #[test]
    fn kolmogorov_smirnov_matches_known_answers() {
        // identical samples: D = 0
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!(close(kolmogorov_smirnov(&a, &a), 1.0, 1e-12));
        // the Kolmogorov distribution: Q(1.36) ≈ 0.049, Q(1.63) ≈ 0.010
        assert!(close(kolmogorov_q(1.36), 0.0494, 0.001));
        assert!(close(kolmogorov_q(1.628), 0.0100, 0.0005));
        // two clearly apart samples of 20
        let lo = normal_samples("lo", 20, 0.0, 1.0);
        let hi = normal_samples("hi", 20, 3.0, 1.0);
        assert!(kolmogorov_smirnov(&lo, &hi) < 1e-4);
    }

    #[test]
    fn the_high_threshold_falls_with_the_sample_count() {
        let p = Policy::default();
        let t: Vec<f64> = [3, 5, 10, 20, 40]
            .iter()
            .map(|&n| high_threshold(n, n, 1.0, p))
            .collect();
        assert!(t.windows(2).all(|w| w[1] <= w[0]), "{t:?}");
        assert_eq!(t[0], 1.0, "three samples cannot rule out a 1σ shift");
        assert!(t[4] < 0.1, "{t:?}");
        // a larger shift is ruled out sooner
        assert!(high_threshold(10, 10, 3.0, p) < high_threshold(10, 10, 1.0, p));
    }

    #[test]
    fn a_planted_step_is_different_and_the_same_build_is_not() {
        let p = Policy::default();
        let old = normal_samples("old", 20, 100.0, 1.0);
        let same = normal_samples("same", 20, 100.0, 1.0);
        let slower = normal_samples("slower", 20, 105.0, 1.0);
        let c = compare(&old, &slower, p);
        assert_eq!(c.verdict, Verdict::Different, "{c:?}");
        assert!(close(c.change, 0.05, 0.01), "{c:?}");
        let c = compare(&old, &same, p);
        assert_eq!(c.verdict, Verdict::Same, "{c:?}");
    }

    #[test]
    fn a_change_under_the_minimum_effect_is_never_reported() {
        // 1% slower with almost no noise: the tests see it, the policy does not report it
        let old = normal_samples("old", 30, 100.0, 0.01);
        let new = normal_samples("new", 30, 101.0, 0.01);
        let c = compare(&old, &new, Policy::default());
        assert!(c.p_value <= 0.01);
        assert_eq!(c.verdict, Verdict::Same);
        let strict = Policy {
            min_effect: 0.005,
            ..Policy::default()
        };
        assert_eq!(compare(&old, &new, strict).verdict, Verdict::Different);
    }

    #[test]
    fn noisy_small_samples_cannot_tell() {
        // 3 samples, 10% noise, a 5% step: neither same nor different
        let old = normal_samples("o", 3, 100.0, 10.0);
        let new = normal_samples("n", 3, 105.0, 10.0);
        let c = compare(&old, &new, Policy::default());
        assert_eq!(c.verdict, Verdict::Unknown, "{c:?}");
        assert_eq!(
            compare(&[1.0], &[2.0], Policy::default()).verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn a_and_a_rarely_calls_a_difference() {
        // 1,000 pairs of runs of one unchanged build: at most 1% different, and none reported
        // above the minimum effect when the noise is 1%
        let p = Policy::default();
        let different = (0..1000)
            .filter(|i| {
                let a = normal_samples(&format!("a{i}"), 10, 100.0, 1.0);
                let b = normal_samples(&format!("b{i}"), 10, 100.0, 1.0);
                compare(&a, &b, p).verdict == Verdict::Different
            })
            .count();
        assert!(different <= 1, "{different}");
    }

    #[test]
    fn van_elteren_matches_a_known_answer() {
        // one stratum, no ties: the rank-sum z of 5 vs 5 fully separated is
        // (40 − 27.5)/√(25·11/12) = 2.611, p = 0.00902 (the normal approximation, no
        // continuity correction)
        let old = [1.0, 2.0, 3.0, 4.0, 5.0];
        let new = [6.0, 7.0, 8.0, 9.0, 10.0];
        let one = compare_pooled(&[(&old, &new)], Policy::default());
        assert!(close(one.z, 2.611, 0.001), "{one:?}");
        assert!(close(one.p_value, 0.00902, 0.00002), "{one:?}");
        // two identical strata: the statistic adds up, its deviation grows by √2
        let two = compare_pooled(&[(&old, &new), (&old, &new)], Policy::default());
        assert!(
            close(two.z, one.z * std::f64::consts::SQRT_2, 1e-9),
            "{two:?}"
        );
        assert_eq!(two.strata, 2);
        // the sign says which way: faster is negative
        let faster = compare_pooled(&[(&new, &old)], Policy::default());
        assert!(close(faster.z, -one.z, 1e-12));
        // nothing to pool
        let none = compare_pooled(&[(&[1.0], &[2.0])], Policy::default());
        assert_eq!((none.verdict, none.strata), (Verdict::Unknown, 0));
    }

    #[test]
    fn a_shared_step_no_cell_resolves_is_found_across_cells() {
        // 60 cells, 10 samples a side, 8% noise, every cell 3% slower: one cell cannot tell,
        // the cells together can; the same cells unchanged are the same
        let p = Policy::default();
        let cells: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = (0..60)
            .map(|i| {
                (
                    normal_samples(&format!("old{i}"), 10, 100.0, 8.0),
                    normal_samples(&format!("slow{i}"), 10, 103.0, 8.0),
                    normal_samples(&format!("same{i}"), 10, 100.0, 8.0),
                )
            })
            .collect();
        let one = compare(&cells[0].0, &cells[0].1, p);
        assert_ne!(one.verdict, Verdict::Different, "{one:?}");
        let slower: Vec<(&[f64], &[f64])> = cells
            .iter()
            .map(|(o, s, _)| (o.as_slice(), s.as_slice()))
            .collect();
        let pooled = compare_pooled(&slower, p);
        assert_eq!(pooled.verdict, Verdict::Different, "{pooled:?}");
        assert!(
            pooled.z > 0.0 && close(pooled.change, 0.03, 0.015),
            "{pooled:?}"
        );
        let same: Vec<(&[f64], &[f64])> = cells
            .iter()
            .map(|(o, _, s)| (o.as_slice(), s.as_slice()))
            .collect();
        let pooled = compare_pooled(&same, p);
        assert_eq!(pooled.verdict, Verdict::Same, "{pooled:?}");
        // 1% slower with almost no noise: found, and shown to be under the minimum effect
        let quiet: Vec<(Vec<f64>, Vec<f64>)> = (0..60)
            .map(|i| {
                (
                    normal_samples(&format!("qo{i}"), 10, 100.0, 0.1),
                    normal_samples(&format!("qn{i}"), 10, 101.0, 0.1),
                )
            })
            .collect();
        let quiet: Vec<(&[f64], &[f64])> = quiet
            .iter()
            .map(|(o, n)| (o.as_slice(), n.as_slice()))
            .collect();
        let pooled = compare_pooled(&quiet, p);
        assert!(pooled.p_value < 1e-10, "{pooled:?}");
        assert!(pooled.change_high < 0.03, "{pooled:?}");
        assert_eq!(pooled.verdict, Verdict::Same, "{pooled:?}");
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(iqr(&[1.0, 2.0, 3.0, 4.0, 5.0]), 2.0);
        assert!(median(&[]).is_nan());
    }
}
