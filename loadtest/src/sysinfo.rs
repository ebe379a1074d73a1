//! What the host tells through `/proc` and `getrlimit`: the machine (cores, CPU model,
//! memory, kernel) for the report, CPU time of this process and of one thread, a
//! process's resident memory, and the open-file limit. Linux-only readings degrade to
//! "unknown" elsewhere rather than failing the run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `/proc` CPU-time unit (`USER_HZ`): 100 ticks per second on every Linux
/// architecture, regardless of the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// Descriptors kept free beyond one per client: the universe connection, HTTP requests
/// to `/stats` and `/snapshot`, output files, the runtime's own descriptors.
pub const FD_HEADROOM: u64 = 64;

/// The machine a report was made on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores this process may use.
    pub cores: usize,
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Total memory, bytes (`/proc/meminfo`).
    pub memory_bytes: u64,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
}

impl Machine {
    /// Reads the current machine.
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo.lines().find_map(|l| kib_field(l, "MemTotal:")).map_or(0, |k| k * 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_string());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel,
        }
    }

    /// One line: `2 cores, Intel(R) Xeon(R) ..., 24.0 GiB, Linux 6.1.0`.
    pub fn summary(&self) -> String {
        format!(
            "{} cores, {}, {:.1} GiB, {}",
            self.cores,
            self.cpu_model,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.kernel
        )
    }
}

/// `"VmRSS:   1234 kB"` → `Some(1234)` when the line starts with `name`.
fn kib_field(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix(name)?.split_whitespace().next()?.parse().ok()
}

/// User + system CPU time from a `/proc/.../stat` line (fields 14 and 15, counted after
/// the parenthesised command name, which may itself contain spaces).
pub fn cpu_from_stat(stat: &str) -> Option<Duration> {
    let after = stat.rsplit_once(')')?.1;
    let mut f = after.split_whitespace();
    // After ")": state is field 3, so utime (14) is the 12th token and stime (15) the 13th.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
}

/// CPU time used so far by this process (all threads).
pub fn process_cpu() -> Option<Duration> {
    cpu_from_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU time used so far by process `pid` (all threads), if it exists.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    cpu_from_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu() -> Option<Duration> {
    cpu_from_stat(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// Resident memory of process `pid`, bytes (`VmRSS` of `/proc/PID/status`).
///
/// # Errors
///
/// If the file cannot be read (no such process) or has no `VmRSS` line.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    s.lines()
        .find_map(|l| kib_field(l, "VmRSS:"))
        .map(|k| k * 1024)
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

pub use tickgate::gateway::raise_fd_limit;

/// Checks that `clients` connections fit the open-file limit `soft`.
///
/// # Errors
///
/// A message with the limit, the client count and what to do instead.
pub fn check_fd_budget(clients: usize, soft: u64, hard: u64) -> Result<(), String> {
    let need = clients as u64 + FD_HEADROOM;
    if need <= soft {
        return Ok(());
    }
    let per_process = soft.saturating_sub(FD_HEADROOM).max(1);
    let processes = (clients as u64).div_ceil(per_process);
    Err(format!(
        "{clients} clients do not fit the open-file limit: each needs a descriptor, plus {FD_HEADROOM} spare, \
         = {need} > {soft} (soft limit, raised to the hard limit {hard}). Either run {processes} processes \
         with --clients {} each (each with --json FILE), then combine them with \
         `tickgate-loadtest --merge FILE...`, or raise the hard limit (ulimit -Hn, /etc/security/limits.conf) \
         and run again.",
        (clients as u64).div_ceil(processes)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        let line = "1234 (tickgate loadtest) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 4 0 100 0 0";
        assert_eq!(cpu_from_stat(line), Some(Duration::from_secs(4)));
        assert_eq!(cpu_from_stat("garbage"), None);
        assert!(process_cpu().is_some());
        assert!(thread_cpu().is_some());
        assert!(pid_cpu(std::process::id()).is_some());
        assert!(pid_cpu(u32::MAX).is_none());
    }

    #[test]
    fn reads_own_rss_and_machine() {
        assert!(rss_bytes(std::process::id()).unwrap() > 1 << 20);
        assert!(rss_bytes(u32::MAX).is_err());
        let m = Machine::current();
        assert!(m.cores >= 1 && m.memory_bytes > 0, "{m:?}");
        assert!(m.summary().contains("cores"));
    }

    #[test]
    fn fd_budget_explains_itself() {
        assert!(check_fd_budget(18_000, 20_000, 20_000).is_ok());
        let e = check_fd_budget(30_000, 20_000, 20_000).unwrap_err();
        assert!(e.contains("30000 clients") && e.contains("20000") && e.contains("--merge"), "{e}");
        assert!(e.contains("2 processes with --clients 15000"), "{e}");
    }
}
