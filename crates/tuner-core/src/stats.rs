//! Statistics more than one crate needs: the median (of the pruner's peers in the
//! server, of the completed values the GP imputes pruned trials at).

/// The median of `values` (NaN sorts last, by [`f64::total_cmp`]); the mean of the
/// middle two when their number is even.
///
/// # Panics
/// When `values` is empty: callers decide what an empty set means.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "the median of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn odd_takes_the_middle_even_the_mean_of_the_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }
}
