//! Source addresses for loopback targets. A client socket is bound to `127.0.0.x:0` before
//! it connects, spreading the clients over several addresses: each address has its own
//! ephemeral port range (32768–60999 here, ~28,000 ports), so 18,000 clients never crowd
//! one, and **each run takes a fresh range of addresses**, so the previous run's TIME_WAIT
//! sockets (60 s on Linux) cannot block this one. The next free `x` is kept in a tiny
//! state file in the temp directory, locked while it is updated (concurrent processes of
//! a `--merge` run get different ranges).

use std::io::{Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::options::SourceAddrs;

/// Clients per source address: well under the ~28,000 ephemeral ports of an address (and
/// the ~20,000 the issue allows), so port allocation at `bind` stays fast.
pub const PER_ADDR: usize = 5_000;
/// First `x` of `127.0.0.x` used (127.0.0.1 is left to everything else).
pub const FIRST: u8 = 2;
/// Last `x` used.
pub const LAST: u8 = 254;

/// The source addresses of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePlan {
    addrs: Vec<Ipv4Addr>,
}

impl SourcePlan {
    /// No binding: the kernel chooses.
    pub fn none() -> SourcePlan {
        SourcePlan::default()
    }

    /// The address client `i` binds to, if any (clients are spread round-robin).
    pub fn for_client(&self, i: usize) -> Option<IpAddr> {
        if self.addrs.is_empty() { None } else { Some(IpAddr::V4(self.addrs[i % self.addrs.len()])) }
    }

    /// The addresses, for the report.
    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }
}

/// `count` consecutive values of `x` starting at `next` (wrapping within
/// [`FIRST`]..=[`LAST`]), and the `next` to store for the following run.
pub fn take(next: u8, count: usize) -> (Vec<u8>, u8) {
    let span = usize::from(LAST - FIRST) + 1;
    let count = count.clamp(1, span);
    let start = if (FIRST..=LAST).contains(&next) { usize::from(next - FIRST) } else { 0 };
    let xs: Vec<u8> = (0..count).map(|i| FIRST + ((start + i) % span) as u8).collect();
    let after = FIRST + ((start + count) % span) as u8;
    (xs, after)
}

/// The state file.
pub fn state_path() -> PathBuf {
    std::env::temp_dir().join("tickgate-loadtest-source-addrs")
}

/// Plans the source addresses of a run of `clients` clients against `targets`.
///
/// Rotation applies only when every target is an IPv4 loopback address; otherwise the
/// kernel chooses. A state file that cannot be used only costs the rotation (the range
/// then starts at 127.0.0.2), never the run.
pub fn plan(mode: SourceAddrs, clients: usize, targets: &[SocketAddr]) -> SourcePlan {
    let loopback_v4 = targets.iter().all(|a| matches!(a.ip(), IpAddr::V4(v4) if v4.is_loopback()));
    if mode == SourceAddrs::Off || !loopback_v4 {
        return SourcePlan::none();
    }
    // +1 for the connection that fetches the universe.
    let count = (clients + 1).div_ceil(PER_ADDR);
    let xs = match reserve(&state_path(), count) {
        Ok(xs) => xs,
        Err(_) => take(FIRST, count).0,
    };
    let addrs: Vec<Ipv4Addr> = xs.into_iter().map(|x| Ipv4Addr::new(127, 0, 0, x)).collect();
    // Some sandboxes route only 127.0.0.1: then let the kernel choose rather than fail.
    if addrs.iter().any(|a| std::net::TcpListener::bind((*a, 0)).is_err()) {
        return SourcePlan::none();
    }
    SourcePlan { addrs }
}

/// Reads the next `x` from `path` under an exclusive lock, takes `count` addresses and
/// stores the following `x`.
fn reserve(path: &Path, count: usize) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    f.lock()?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    let next = s.trim().parse::<u8>().unwrap_or(FIRST);
    let (xs, after) = take(next, count);
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{after}")?;
    f.unlock()?;
    Ok(xs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn take_rotates_and_wraps() {
        assert_eq!(take(2, 1), (vec![2], 3));
        assert_eq!(take(10, 4), (vec![10, 11, 12, 13], 14));
        assert_eq!(take(253, 3), (vec![253, 254, 2], 3));
        assert_eq!(take(0, 2), (vec![2, 3], 4)); // out of range: start over
        assert_eq!(take(255, 1), (vec![2], 3));
        assert_eq!(take(2, 1000).0.len(), 253);
    }

    #[test]
    fn consecutive_runs_get_fresh_ranges() {
        let dir = std::env::temp_dir().join(format!("tickgate-loadtest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        let a = reserve(&path, 2).unwrap();
        let b = reserve(&path, 2).unwrap();
        assert_eq!(a, vec![2, 3]);
        assert_eq!(b, vec![4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_loopback_targets_rotate() {
        let lo: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        assert_eq!(plan(SourceAddrs::Rotate, 10, &[other]), SourcePlan::none());
        assert_eq!(plan(SourceAddrs::Off, 10, &[lo]), SourcePlan::none());
        let p = plan(SourceAddrs::Rotate, 18_000, &[lo]);
        assert_eq!(p.addrs().len(), 4);
        assert!(p.for_client(0).is_some());
    }
}
