//! CPU time from /proc: of one process, of this process's waited-for children, and of the
//! whole machine (to report how busy it was while a run was timed).

/// USER_HZ: the unit of the tick counts in /proc/*/stat (100 on every Linux we run on).
const TICKS_PER_S: f64 = 100.0;

/// The fields after the parenthesised command name of /proc/PID/stat (state is field 0).
fn stat_fields(path: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().skip(1).map(|f| f.parse::<i64>().unwrap_or(0).max(0) as u64).collect())
}

/// user + system seconds of process `pid` itself plus its waited-for children (a shell hook
/// run by aria2 counts for aria2); `None` once the process is gone.
pub fn process_seconds(pid: u32) -> Option<f64> {
    // After the state: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime, so utime is index 10 here.
    let f = stat_fields(&format!("/proc/{pid}/stat"))?;
    Some((f.get(10)? + f.get(11)? + f.get(12)? + f.get(13)?) as f64 / TICKS_PER_S)
}

/// Whether process `pid` exists and has not exited (a zombie not yet waited for has).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// user + system seconds of the children this process has waited for (cutime + cstime).
pub fn waited_children_seconds() -> f64 {
    stat_fields("/proc/self/stat").and_then(|f| Some((f.get(12)? + f.get(13)?) as f64 / TICKS_PER_S)).unwrap_or(0.0)
}

/// Busy and total jiffies of all CPUs (the `cpu` line of /proc/stat).
#[derive(Clone, Copy)]
pub struct MachineTicks {
    busy: u64,
    total: u64,
}

pub fn machine_ticks() -> MachineTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().take(8).sum();
    // idle (3) and iowait (4) are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    MachineTicks { busy: total.saturating_sub(idle), total }
}

/// Percent of all CPUs busy between two readings (everything on the machine, not just ours).
pub fn busy_percent(from: MachineTicks, to: MachineTicks) -> f64 {
    let total = to.total.saturating_sub(from.total).max(1);
    100.0 * to.busy.saturating_sub(from.busy) as f64 / total as f64
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

/// Sum of `process_seconds` over `pids` (processes already gone count 0).
pub fn sum_seconds(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| process_seconds(p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let pid = std::process::id();
        let before = process_seconds(pid).expect("own /proc entry");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_seconds(pid).unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
        assert!(process_seconds(u32::MAX).is_none());
    }

    #[test]
    fn machine_ticks_advance() {
        let a = machine_ticks();
        std::thread::sleep(Duration::from_millis(50));
        let b = machine_ticks();
        assert!(b.total > a.total);
        let pct = busy_percent(a, b);
        assert!((0.0..=100.0).contains(&pct), "{pct}");
    }
}
