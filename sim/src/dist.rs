//! Random distributions used by scenarios (session lengths, think times, skill,
//! latency), written as TOML inline tables with a `kind`:
//!
//! ```toml
//! length_s  = { kind = "log_normal", median = 600, sigma = 0.9, max = 7200 }
//! think_ms  = { kind = "exponential", mean = 2000 }
//! skill     = { kind = "normal", mean = 1500, stddev = 300, min = 0, max = 3000 }
//! rtt_ms    = { kind = "uniform", min = 20, max = 60 }
//! fixed     = { kind = "fixed", value = 5 }
//! ```
//!
//! Units are those of the field the distribution is used for (its name says:
//! `_s`, `_ms`, rating points). Sampling is implemented here (Box–Muller for
//! normals) to keep dependencies small.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A distribution of non-negative numbers (samples are clamped at 0 and at
/// the optional `min` / `max`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always `value`.
    Fixed { value: f64 },
    /// Uniform in `[min, max]`.
    Uniform { min: f64, max: f64 },
    /// Normal with `mean` and `stddev`, clamped to `[min, max]` when given.
    Normal {
        mean: f64,
        stddev: f64,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    /// Log-normal with the given `median` and `sigma` (the standard deviation
    /// of the logarithm): a long right tail, typical of session lengths.
    LogNormal {
        median: f64,
        sigma: f64,
        #[serde(default)]
        max: Option<f64>,
    },
    /// Exponential with the given `mean` (memoryless waits, think times).
    Exponential {
        mean: f64,
        #[serde(default)]
        max: Option<f64>,
    },
}

impl Dist {
    /// Checks the parameters; `Err` says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let fin = |v: f64| v.is_finite();
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        let ok = match *self {
            Dist::Fixed { value } => nonneg(value),
            Dist::Uniform { min, max } => nonneg(min) && nonneg(max) && min <= max,
            Dist::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                fin(mean)
                    && nonneg(stddev)
                    && min.is_none_or(fin)
                    && max.is_none_or(fin)
                    && min.zip(max).is_none_or(|(a, b)| a <= b)
            }
            Dist::LogNormal { median, sigma, max } => {
                median.is_finite() && median > 0.0 && nonneg(sigma) && max.is_none_or(nonneg)
            }
            Dist::Exponential { mean, max } => nonneg(mean) && max.is_none_or(nonneg),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid {self:?}: parameters must be finite, non-negative, min <= max, median > 0"
            ))
        }
    }

    /// One sample (>= 0).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let v = match *self {
            Dist::Fixed { value } => value,
            Dist::Uniform { min, max } => {
                if max > min {
                    rng.gen_range(min..=max)
                } else {
                    min
                }
            }
            Dist::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                let v = mean + stddev * std_normal(rng);
                v.max(min.unwrap_or(f64::MIN)).min(max.unwrap_or(f64::MAX))
            }
            Dist::LogNormal { median, sigma, max } => {
                (median * (sigma * std_normal(rng)).exp()).min(max.unwrap_or(f64::MAX))
            }
            Dist::Exponential { mean, max } => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                (-mean * u.ln()).min(max.unwrap_or(f64::MAX))
            }
        };
        v.max(0.0)
    }

    /// The distribution's mean, ignoring clamping (for docs and estimates).
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Fixed { value } => value,
            Dist::Uniform { min, max } => (min + max) / 2.0,
            Dist::Normal { mean, .. } => mean,
            Dist::LogNormal { median, sigma, .. } => median * (sigma * sigma / 2.0).exp(),
            Dist::Exponential { mean, .. } => mean,
        }
    }
}

/// A standard normal sample (Box–Muller).
fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn mean_of(d: &Dist, n: usize) -> f64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..n).map(|_| d.sample(&mut rng)).sum::<f64>() / n as f64
    }

    #[test]
    fn sample_means_match() {
        let cases = [
            Dist::Fixed { value: 3.0 },
            Dist::Uniform { min: 10.0, max: 20.0 },
            Dist::Normal {
                mean: 1500.0,
                stddev: 300.0,
                min: None,
                max: None,
            },
            Dist::Exponential { mean: 2.0, max: None },
            Dist::LogNormal {
                median: 100.0,
                sigma: 0.5,
                max: None,
            },
        ];
        for d in cases {
            d.validate().unwrap();
            let m = mean_of(&d, 200_000);
            assert!((m - d.mean()).abs() / d.mean() < 0.02, "{d:?}: sample mean {m}");
        }
    }

    #[test]
    fn clamps_apply() {
        let d = Dist::Normal {
            mean: 0.0,
            stddev: 100.0,
            min: Some(-5.0),
            max: Some(5.0),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let v = d.sample(&mut rng);
            assert!((0.0..=5.0).contains(&v), "{v}");
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Dist::Uniform { min: 5.0, max: 1.0 }.validate().is_err());
        assert!(Dist::LogNormal {
            median: 0.0,
            sigma: 1.0,
            max: None
        }
        .validate()
        .is_err());
        assert!(Dist::Exponential {
            mean: f64::INFINITY,
            max: None
        }
        .validate()
        .is_err());
        let parsed: Result<Dist, _> = toml::from_str("kind = \"normal\"\nmean = 1\nstdev = 2\n");
        assert!(parsed.is_err(), "typos in parameter names are refused");
    }
}
