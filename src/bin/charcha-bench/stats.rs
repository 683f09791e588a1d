//! Latency percentiles and process CPU/RSS sampling from /proc.

use serde::Serialize;

/// Percentiles of latency samples (microseconds), in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(mut us: Vec<u32>) -> Self {
        if us.is_empty() {
            return Self::default();
        }
        us.sort_unstable();
        let n = us.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            us[rank - 1] as f64 / 1000.0
        };
        let sum: u64 = us.iter().map(|&v| v as u64).sum();
        Self {
            samples: n,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: us[n - 1] as f64 / 1000.0,
            mean_ms: sum as f64 / n as f64 / 1000.0,
        }
    }
}

/// CPU time and memory of one process, from /proc/PID/{stat,status}.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime, seconds.
    pub cpu_secs: f64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

/// Linux reports /proc times in USER_HZ, which is 100 on every platform
/// Linux supports for userspace (`getconf CLK_TCK`).
const CLK_TCK: f64 = 100.0;

pub fn sample(pid: &str) -> Result<ProcSample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may hold spaces: fields
    // start after the last ')'. Field 3 (state) is index 0 there, so
    // utime (14) and stime (15) are indexes 11 and 12.
    let after = stat.rsplit_once(')').map(|(_, a)| a).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / CLK_TCK;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample { cpu_secs, rss_kb: kb("VmRSS:"), hwm_kb: kb("VmHWM:") })
}

/// Sums of several processes (a server of several instances).
pub fn sample_all(pids: &[String]) -> Result<ProcSample, String> {
    let mut total = ProcSample::default();
    for pid in pids {
        let s = sample(pid)?;
        total.cpu_secs += s.cpu_secs;
        total.rss_kb += s.rss_kb;
        total.hwm_kb += s.hwm_kb;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=1000).map(|v| v * 1000).collect());
        assert_eq!((l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms), (500.0, 990.0, 999.0, 1000.0));
        assert!(sample("self").unwrap().rss_kb > 0);
    }
}
