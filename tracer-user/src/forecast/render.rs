//! Forecasts in words, as every sink that writes for people says them: `will hit
//! pids.max (600) in ~1.6 min at +120/min`, or why there is no forecast.

use std::fmt;

use super::{Exhaustion, Forecast, LimitKind, NoForecast, Resource};

/// A byte count as people read memory: "512 KiB", "41 MiB", "3.1 GiB".
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n.abs();
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let sign = if n < 0.0 { "-" } else { "" };
    if value < 10.0 && unit > 0 {
        format!("{sign}{value:.1} {}", UNITS[unit])
    } else {
        format!("{sign}{value:.0} {}", UNITS[unit])
    }
}

/// A time left as people read it: "~45 s", "~1.6 min", "~3.2 h", "~2.5 d".
pub fn time_left(secs: f64) -> String {
    match secs {
        s if s < 90.0 => format!("~{s:.0} s"),
        s if s < 90.0 * 60.0 => format!("~{:.1} min", s / 60.0),
        s if s < 36.0 * 3600.0 => format!("~{:.1} h", s / 3600.0),
        s => format!("~{:.1} d", s / 86400.0),
    }
}

/// An amount of what `resource` counts: bytes for memory, a plain number otherwise.
fn amount(resource: Resource, n: f64) -> String {
    match resource {
        Resource::Memory => bytes(n),
        Resource::Tasks | Resource::Mappings => format!("{n:.0}"),
    }
}

/// A growth per second as a rate per minute: "+120/min", "+30 MiB/min".
pub fn rate(resource: Resource, per_s: f64) -> String {
    let per_min = per_s * 60.0;
    match resource {
        Resource::Memory => format!("+{}/min", bytes(per_min)),
        Resource::Tasks | Resource::Mappings if per_min < 10.0 => format!("+{per_min:.1}/min"),
        Resource::Tasks | Resource::Mappings => format!("+{per_min:.0}/min"),
    }
}

impl fmt::Display for NoForecast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoLimit => f.write_str("no limit is set"),
            Self::NotEnforced => f.write_str("not enforced for root"),
            Self::Unknown(what) => f.write_str(what),
            Self::TooFewSamples(n) => write!(f, "too few samples ({n}) to extrapolate"),
            Self::NotGrowing(resource) => write!(f, "{} not growing", resource.name()),
            Self::TooNoisy {
                resource,
                rate_per_s,
                relative_error,
            } => write!(
                f,
                "{} trend too noisy to extrapolate ({} \u{b1} {:.0}%)",
                resource.name(),
                rate(resource, rate_per_s),
                relative_error * 100.0
            ),
        }
    }
}

impl Forecast {
    /// The limit and its value: "pids.max (600)", "the host's memory (3.1 GiB
    /// available)".
    pub fn limit_text(&self) -> String {
        let resource = self.limit.resource();
        match (self.limit, self.value) {
            (LimitKind::HostMemory, Some(total)) => {
                let available = total.saturating_sub(self.used.unwrap_or(0));
                format!("the host's memory ({} available)", bytes(available as f64))
            }
            (limit, Some(value)) => {
                format!("{} ({})", limit.name(), amount(resource, value as f64))
            }
            (limit, None) => limit.name().to_string(),
        }
    }
}

impl fmt::Display for Forecast {
    /// "will hit pids.max (600) in ~1.6 min at +120/min", "has hit pids.max (600)", or
    /// "pids.max: no limit is set".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.eta_s, self.rate_per_s) {
            (Ok(eta), _) if *eta <= 0.0 => write!(f, "has hit {}", self.limit_text()),
            (Ok(eta), Some(per_s)) => write!(
                f,
                "will hit {} in {} at {}",
                self.limit_text(),
                time_left(*eta),
                rate(self.limit.resource(), per_s)
            ),
            (Ok(eta), None) => write!(f, "will hit {} in {}", self.limit_text(), time_left(*eta)),
            (Err(why), _) => write!(f, "{}: {why}", self.limit.name()),
        }
    }
}

impl fmt::Display for Exhaustion {
    /// The first limit reached, or why none has a forecast.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first(), self.closest()) {
            (Some(first), _) => write!(f, "{first}"),
            (None, Some(closest)) => write!(f, "no exhaustion forecast: {closest}"),
            (None, None) => f.write_str("no exhaustion forecast: no limit was read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check the units people read: bytes, times left, rates.
    #[test]
    fn units() {
        assert_eq!(bytes(512.0 * 1024.0), "512 KiB");
        assert_eq!(bytes(41.0 * 1024.0 * 1024.0), "41 MiB");
        assert_eq!(bytes(3.1 * 1024.0 * 1024.0 * 1024.0), "3.1 GiB");
        assert_eq!(bytes(100.0), "100 B");
        assert_eq!(time_left(45.0), "~45 s");
        assert_eq!(time_left(95.0), "~1.6 min");
        assert_eq!(time_left(3.2 * 3600.0), "~3.2 h");
        assert_eq!(time_left(2.5 * 86400.0), "~2.5 d");
        assert_eq!(rate(Resource::Tasks, 2.0), "+120/min");
        assert_eq!(rate(Resource::Tasks, 0.05), "+3.0/min");
        assert_eq!(rate(Resource::Memory, 512.0 * 1024.0), "+30 MiB/min");
    }

    /// Check the sentences of a forecast, a limit reached, one without a forecast, and
    /// the host's memory.
    #[test]
    fn sentences() {
        let mut f = Forecast {
            limit: LimitKind::CgroupPids,
            source: "/sys/fs/cgroup/pids/leaky".into(),
            value: Some(600),
            used: Some(412),
            rate_per_s: Some(2.0),
            eta_s: Ok(95.0),
        };
        assert_eq!(
            f.to_string(),
            "will hit pids.max (600) in ~1.6 min at +120/min"
        );
        f.eta_s = Ok(0.0);
        assert_eq!(f.to_string(), "has hit pids.max (600)");
        f.eta_s = Err(NoForecast::TooNoisy {
            resource: Resource::Tasks,
            rate_per_s: 2.0,
            relative_error: 0.6,
        });
        assert_eq!(
            f.to_string(),
            "pids.max: threads trend too noisy to extrapolate (+120/min \u{b1} 60%)"
        );
        let memory = Forecast {
            limit: LimitKind::HostMemory,
            source: "/proc/meminfo".into(),
            value: Some(8 << 30),
            used: Some(5 << 30),
            rate_per_s: Some(1024.0 * 1024.0),
            eta_s: Ok(3072.0),
        };
        assert_eq!(
            memory.to_string(),
            "will hit the host's memory (3.0 GiB available) in ~51.2 min at +60 MiB/min"
        );
    }
}
