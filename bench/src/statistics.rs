//! Summaries of repeated measurements: medians, percentiles and spreads, and ratios taken round by
//! round so that slow drift of a noisy machine cancels out.

/// The value at `percentile` (0–100) of `samples`, by the nearest-rank method: the smallest sample
/// with at least that share of samples at or below it. `None` for no samples.
pub(crate) fn percentile(samples: &[f64], percentile: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|value| !value.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (percentile.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median: the middle sample, or the mean of the two middle ones for an even count.
pub(crate) fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|value| !value.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// Median, smallest and largest of a set of measurements, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub(crate) median: f64,
    pub(crate) minimum: f64,
    pub(crate) maximum: f64,
    pub(crate) count: usize,
}

impl Summary {
    pub(crate) fn of(samples: &[f64]) -> Option<Summary> {
        let median = median(samples)?;
        let minimum = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let maximum = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Summary { median, minimum, maximum, count: samples.len() })
    }
}

/// The median of `numerator[i] / denominator[i]` over rounds where both were measured: each
/// ratio compares two measurements taken side by side in the same round.
pub(crate) fn median_ratio(numerator: &[f64], denominator: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .filter(|(_, below)| **below != 0.0)
        .map(|(above, below)| above / below)
        .collect();
    median(&ratios)
}

/// The median of `left[i] − right[i]` over rounds.
pub(crate) fn median_difference(left: &[f64], right: &[f64]) -> Option<f64> {
    let differences: Vec<f64> = left.iter().zip(right).map(|(left, right)| left - right).collect();
    median(&differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        // Few samples: p99 is the largest.
        assert_eq!(percentile(&[5.0, 1.0, 9.0], 99.0), Some(9.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn ratios_pair_rounds_and_skip_zero_denominators() {
        assert_eq!(median_ratio(&[2.0, 9.0, 4.0], &[1.0, 3.0, 0.0]), Some(2.5));
        assert_eq!(median_difference(&[10.0, 12.0, 20.0], &[9.0, 10.0, 10.0]), Some(2.0));
        let summary = Summary::of(&[4.0, 2.0, 6.0]).unwrap();
        assert_eq!(
            (summary.median, summary.minimum, summary.maximum, summary.count),
            (4.0, 2.0, 6.0, 3)
        );
    }
}
