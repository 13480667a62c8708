//! Results of one scenario run: the table row and the JSON line.

use std::fmt::Write as _;

use super::verify::Verdict;

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub destination: String,
    pub producers: usize,
    pub consumers: usize,
    pub body_size: usize,
    /// Messages the producers sent (for idle-conns: connections opened).
    pub messages: u64,
    /// MESSAGE frames the consumers received.
    pub deliveries: u64,
    pub seconds: f64,
    /// Latency percentiles in milliseconds (latency scenario only).
    pub latency: Option<Latency>,
    /// `None` when nothing was checked (idle-conns, fill).
    pub verdict: Option<Verdict>,
    /// Highest broker RSS sampled during the run (with `--rss-pid`), KiB.
    pub rss_kib: Option<u64>,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

impl Latency {
    /// Percentiles of latencies in nanoseconds (sorted in place).
    pub fn from_nanos(v: &mut [u64]) -> Option<Latency> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let pick = |q: f64| {
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            v[i.min(v.len() - 1)] as f64 / 1e6
        };
        Some(Latency {
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: v[v.len() - 1] as f64 / 1e6,
            samples: v.len() as u64,
        })
    }
}

impl Report {
    pub fn msg_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn deliveries_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.deliveries as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Passed: no error, and the check (if any) found nothing wrong.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.verdict.is_none_or(|v| v.ok())
    }

    fn verified_text(&self) -> String {
        if let Some(e) = &self.error {
            return format!("ERROR: {e}");
        }
        match self.verdict {
            None => "-".to_owned(),
            Some(v) if v.ok() => "yes".to_owned(),
            Some(v) => format!(
                "NO (missing {}, dup {}, order {})",
                v.missing, v.duplicates, v.out_of_order
            ),
        }
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let mut s = String::with_capacity(512);
        let _ = write!(
            s,
            "{{\"scenario\":{},\"destination\":{},\"producers\":{},\"consumers\":{},\"body_size\":{},\
             \"messages\":{},\"deliveries\":{},\"seconds\":{:.4},\"msg_per_s\":{:.1},\"deliveries_per_s\":{:.1}",
            json_str(&self.scenario),
            json_str(&self.destination),
            self.producers,
            self.consumers,
            self.body_size,
            self.messages,
            self.deliveries,
            self.seconds,
            self.msg_per_s(),
            self.deliveries_per_s(),
        );
        match self.latency {
            Some(l) => {
                let _ = write!(
                    s,
                    ",\"p50_ms\":{:.4},\"p99_ms\":{:.4},\"max_ms\":{:.4},\"latency_samples\":{}",
                    l.p50_ms, l.p99_ms, l.max_ms, l.samples
                );
            }
            None => s.push_str(",\"p50_ms\":null,\"p99_ms\":null,\"max_ms\":null"),
        }
        match self.verdict {
            Some(v) => {
                let _ = write!(
                    s,
                    ",\"verified\":{},\"missing\":{},\"duplicates\":{},\"out_of_order\":{},\"foreign\":{}",
                    v.ok(),
                    v.missing,
                    v.duplicates,
                    v.out_of_order,
                    v.foreign
                );
            }
            None => s.push_str(",\"verified\":null"),
        }
        match self.rss_kib {
            Some(r) => {
                let _ = write!(s, ",\"broker_rss_kib\":{r}");
            }
            None => s.push_str(",\"broker_rss_kib\":null"),
        }
        match &self.error {
            Some(e) => {
                let _ = write!(s, ",\"error\":{}", json_str(e));
            }
            None => s.push_str(",\"error\":null"),
        }
        s.push('}');
        s
    }
}

/// The human table.
pub fn table(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:>4} {:>4} {:>10} {:>8} {:>11} {:>13} {:>8} {:>8} {:>9}  verified",
        "scenario",
        "prod",
        "cons",
        "messages",
        "seconds",
        "msg/s",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "rss MiB"
    );
    for r in reports {
        let (p50, p99) = match r.latency {
            Some(l) => (format!("{:.3}", l.p50_ms), format!("{:.3}", l.p99_ms)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let rss = r
            .rss_kib
            .map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        let _ = writeln!(
            s,
            "{:<18} {:>4} {:>4} {:>10} {:>8.3} {:>11.0} {:>13.0} {:>8} {:>8} {:>9}  {}",
            r.scenario,
            r.producers,
            r.consumers,
            r.messages,
            r.seconds,
            r.msg_per_s(),
            r.deliveries_per_s(),
            p50,
            p99,
            rss,
            r.verified_text()
        );
    }
    s
}

fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Resident set size of a process, KiB, from /proc (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let l = Latency::from_nanos(&mut v).unwrap();
        assert!((l.p50_ms - 50.0).abs() <= 1.0);
        assert!((l.p99_ms - 99.0).abs() <= 1.0);
        assert_eq!(l.max_ms, 100.0);
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        let r = Report {
            scenario: "p1c1".into(),
            ..Report::default()
        };
        assert!(r.json().starts_with("{\"scenario\":\"p1c1\""));
    }
}
