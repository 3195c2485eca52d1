//! The two measures of a course the verdict uses: its least-squares slope, and how far
//! it strays from a straight line up.

/// Least-squares slope of `ys` over `xs` (per unit of `xs`); 0 when undefined.
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return 0.0;
    }
    let mx = xs[..n].iter().sum::<f64>() / n as f64;
    let my = ys[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for i in 0..n {
        sxy += (xs[i] - mx) * (ys[i] - my);
        sxx += (xs[i] - mx) * (xs[i] - mx);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// How far `ys` (a course starting at 0 before `start_s`) strays from the straight line
/// from 0 at `start_s` to its last value, as a share of that value; `None` when the
/// last value is not above 0.
pub fn unevenness(xs: &[f64], ys: &[f64], start_s: f64) -> Option<f64> {
    let (&x_end, &y_end) = (xs.last()?, ys.last()?);
    if y_end <= 0.0 || x_end <= start_s {
        return None;
    }
    let stray = xs
        .iter()
        .zip(ys)
        .map(|(&x, &y)| (y - y_end * (x - start_s) / (x_end - start_s)).abs())
        .fold(0.0, f64::max);
    Some(stray / y_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check the slope on a known line, and how far a course strays from steady growth:
    /// not at all along a line, half its size for a step half way, undefined when it
    /// ends where it began.
    #[test]
    fn slope_and_unevenness_of_known_courses() {
        assert!((slope(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[1.0], &[1.0]), 0.0);
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert!(unevenness(&xs, &[2.0, 4.0, 6.0, 8.0], 0.0).unwrap() < 1e-12);
        assert!((unevenness(&xs, &[8.0, 8.0, 8.0, 8.0], 0.0).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(unevenness(&xs, &[3.0, 1.0, 2.0, 0.0], 0.0), None);
    }
}
