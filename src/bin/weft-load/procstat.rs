//! CPU time and RSS of processes, read from `/proc/<pid>/stat` and `/proc/<pid>/status`: the
//! servers' (`--pid`, summed over several) and the generator's own (`self`).

/// `utime + stime` of a process, in seconds, and its RSS in KiB.
pub fn sample(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

/// The server processes given with `--pid`.
pub struct Servers {
    pids: Vec<String>,
}

impl Servers {
    pub fn new(pids: &[u32]) -> Servers {
        Servers {
            pids: pids.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// CPU seconds and RSS summed over every server process (none without `--pid`, or if one
    /// could not be read).
    pub fn sample(&self) -> Option<(f64, u64)> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids
            .iter()
            .map(|pid| sample(pid))
            .try_fold((0.0, 0), |(cpu, rss), s| s.map(|(c, r)| (cpu + c, rss + r)))
    }
}
