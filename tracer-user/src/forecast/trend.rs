//! How fast something grew over the window, and how sure that is: a least-squares line
//! through its samples, with the standard error of its slope. A forecast extrapolates
//! the slope, so it is only as good as the line fits: the relative error of the slope
//! is the relative error of the time left.

/// A line fitted through samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trend {
    /// Growth per second.
    pub slope: f64,
    /// Standard error of the slope (0 when every sample sits on the line).
    pub slope_error: f64,
    /// Samples fitted.
    pub samples: usize,
    /// Seconds from the first sample to the last.
    pub span_s: f64,
}

impl Trend {
    /// The least-squares line through `(t, y)` samples; `None` with fewer than three
    /// (no error can be told) or when they all share one time.
    pub fn fit(samples: &[(f64, f64)]) -> Option<Self> {
        let n = samples.len();
        if n < 3 {
            return None;
        }
        let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n as f64;
        let mean_y = samples.iter().map(|s| s.1).sum::<f64>() / n as f64;
        let (mut stt, mut sty) = (0.0, 0.0);
        for &(t, y) in samples {
            stt += (t - mean_t) * (t - mean_t);
            sty += (t - mean_t) * (y - mean_y);
        }
        if stt <= 0.0 {
            return None;
        }
        let slope = sty / stt;
        let residuals: f64 = samples
            .iter()
            .map(|&(t, y)| {
                let r = y - mean_y - slope * (t - mean_t);
                r * r
            })
            .sum();
        let variance = residuals / (n - 2) as f64;
        let first = samples.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let last = samples
            .iter()
            .map(|s| s.0)
            .fold(f64::NEG_INFINITY, f64::max);
        Some(Self {
            slope,
            slope_error: (variance / stt).sqrt(),
            samples: n,
            span_s: last - first,
        })
    }

    /// The slope's standard error relative to the slope (infinite for a flat line).
    pub fn relative_error(&self) -> f64 {
        if self.slope == 0.0 {
            return f64::INFINITY;
        }
        self.slope_error / self.slope.abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that points on a line give its slope exactly with no error, that noise
    /// gives an error that shrinks with more samples, and that too few samples or one
    /// instant give no trend.
    #[test]
    fn lines_and_noise() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64, 100.0 + 4.0 * i as f64))
            .collect();
        let t = Trend::fit(&line).unwrap();
        assert!((t.slope - 4.0).abs() < 1e-12);
        assert!(t.slope_error < 1e-9);
        assert_eq!((t.samples, t.span_s), (10, 9.0));
        assert!(t.relative_error() < 1e-9);
        // A sawtooth around a gentle rise: noisy.
        let noisy: Vec<(f64, f64)> = (0..10)
            .map(|i| {
                (
                    i as f64,
                    0.5 * i as f64 + if i % 2 == 0 { 10.0 } else { -10.0 },
                )
            })
            .collect();
        let n = Trend::fit(&noisy).unwrap();
        assert!(n.relative_error() > 1.0, "{n:?}");
        let longer: Vec<(f64, f64)> = (0..100)
            .map(|i| {
                (
                    i as f64,
                    0.5 * i as f64 + if i % 2 == 0 { 10.0 } else { -10.0 },
                )
            })
            .collect();
        assert!(Trend::fit(&longer).unwrap().relative_error() < n.relative_error());
        assert_eq!(Trend::fit(&line[..2]), None);
        assert_eq!(Trend::fit(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
        let flat = Trend::fit(&[(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]).unwrap();
        assert_eq!(flat.relative_error(), f64::INFINITY);
    }
}
