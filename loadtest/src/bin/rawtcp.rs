//! `tickgate-rawtcp`: the raw-TCP limit of fan-out on this machine, as a yardstick for the
//! WebSocket servers (scripts/compare.sh).
//!
//! Opens N loopback socket pairs. One writer thread writes pre-encoded WebSocket text
//! frames (server → client, unmasked, ~230 bytes like a JSON update), B frames per `write`
//! call, round-robin over the N sockets, non-blocking, skipping sockets that are full. One
//! reader thread drains all N client ends. After D seconds it reports `write` calls per
//! second, frames per second, and the writer thread's CPU time, so writes and frames per
//! CPU-second can be compared with what a gateway achieves: a gateway cannot write faster
//! than this, and the gap shows how much of its cost is not the kernel's.
//!
//! Plain std threads and `std::net` (no runtime); no unsafe.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use tickgate_loadtest::sysinfo::{self, Machine};

/// Raw-TCP fan-out limit: N loopback socket pairs, one writer thread writing B pre-encoded
/// WebSocket text frames per write() round-robin (non-blocking, skipping full sockets), one
/// reader thread draining them. Reports writes/s, frames/s and the writer's CPU seconds.
#[derive(Debug, Parser)]
#[command(name = "tickgate-rawtcp", version)]
struct Args {
    /// Number of loopback socket pairs (each takes two descriptors).
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Frames per write() call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Size of one frame on the wire, header included (8..=65,535).
    #[arg(long, default_value_t = 230)]
    frame_bytes: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Write the result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The result (also the JSON file).
#[derive(Debug, Serialize)]
struct Result_ {
    tool: String,
    sockets: usize,
    batch: usize,
    frame_bytes: usize,
    duration_secs: f64,
    /// Successful write() calls (a partial write counts as one).
    writes: u64,
    /// write() calls that returned EAGAIN (the socket was full).
    would_block: u64,
    bytes_written: u64,
    bytes_read: u64,
    /// Whole frames written (bytes written / frame bytes).
    frames: u64,
    writes_per_sec: f64,
    frames_per_sec: f64,
    mb_per_sec: f64,
    /// CPU time (user + system) of the writer thread.
    writer_cpu_secs: f64,
    writes_per_cpu_sec: f64,
    frames_per_cpu_sec: f64,
    /// CPU time of the reader thread (the "clients").
    reader_cpu_secs: f64,
    machine: Machine,
}

/// One server → client WebSocket text frame of exactly `total` bytes: FIN + text opcode,
/// no mask, a 7-bit or 16-bit length, and a JSON-update-like payload padded with spaces.
fn ws_frame(total: usize) -> Result<Vec<u8>, String> {
    if !(8..=65_535).contains(&total) {
        return Err(format!("--frame-bytes must be 8..=65535, got {total}"));
    }
    let header = if total - 2 <= 125 { 2 } else { 4 };
    let len = total - header;
    let mut f = Vec::with_capacity(total);
    f.push(0x81);
    if header == 2 {
        f.push(len as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    }
    let sample = br#"{"type":"update","symbol":"AAPL","seq":1290,"bid":189.13,"bid_size":300,"ask":189.14,"ask_size":200,"last":189.13,"last_size":100,"volume":1234567,"ts_event":1732240000123456789,"ts_gateway":1732240000123460000,"snapshot":false}"#;
    let take = sample.len().min(len);
    f.extend_from_slice(&sample[..take]);
    f.resize(total, b' ');
    Ok(f)
}

/// N connected pairs: (server end for the writer, client end for the reader).
fn socket_pairs(n: usize) -> Result<(Vec<TcpStream>, Vec<TcpStream>), String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("listen address: {e}"))?;
    let (mut servers, mut clients) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        // One connect and one accept at a time: the backlog never overflows.
        let c = TcpStream::connect(addr).map_err(|e| format!("connect #{i}: {e}"))?;
        let (s, _) = listener.accept().map_err(|e| format!("accept #{i}: {e}"))?;
        // Like a gateway: no Nagle delay, non-blocking writes.
        s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        s.set_nonblocking(true).map_err(|e| format!("nonblocking: {e}"))?;
        c.set_nonblocking(true).map_err(|e| format!("nonblocking: {e}"))?;
        servers.push(s);
        clients.push(c);
    }
    Ok((servers, clients))
}

/// What the writer counted.
#[derive(Default)]
struct WriterCounts {
    writes: u64,
    would_block: u64,
    bytes: u64,
    cpu: Duration,
}

/// Writes `batch` round-robin until `end`. Each socket keeps its offset into `batch`, so a
/// partial write resumes where it stopped and the stream stays a sequence of whole frames.
fn writer(mut socks: Vec<TcpStream>, batch: Vec<u8>, end: Instant) -> Result<WriterCounts, String> {
    let cpu0 = sysinfo::thread_cpu();
    let mut offset = vec![0usize; socks.len()];
    let mut c = WriterCounts::default();
    let mut turns = 0u32;
    'run: loop {
        for (s, off) in socks.iter_mut().zip(offset.iter_mut()) {
            turns = turns.wrapping_add(1);
            // Reading the clock every write would cost as much as a small write.
            if turns.is_multiple_of(256) && Instant::now() >= end {
                break 'run;
            }
            match s.write(&batch[*off..]) {
                Ok(n) => {
                    c.writes += 1;
                    c.bytes += n as u64;
                    *off = (*off + n) % batch.len();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.would_block += 1,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if socks.is_empty() {
            break;
        }
    }
    c.cpu = match (cpu0, sysinfo::thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    Ok(c)
}

/// Drains every client end until `stop`; returns (bytes read, its CPU time). A pass that
/// reads nothing sleeps briefly, so an idle reader does not take a core from the writer.
fn reader(mut socks: Vec<TcpStream>, stop: Arc<AtomicBool>) -> Result<(u64, Duration), String> {
    let cpu0 = sysinfo::thread_cpu();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut any = false;
        for s in &mut socks {
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n as u64;
                        any = true;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
        if !any {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let cpu = match (cpu0, sysinfo::thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    Ok((total, cpu))
}

fn run(a: &Args) -> Result<Result_, String> {
    if a.sockets == 0 || a.batch == 0 {
        return Err("--sockets and --batch must be at least 1".into());
    }
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration < 1e6) {
        return Err(format!("--duration must be a positive number of seconds, got {}", a.duration));
    }
    let frame = ws_frame(a.frame_bytes)?;
    let (soft, _) = sysinfo::raise_fd_limit();
    let need = 2 * a.sockets as u64 + 64;
    if need > soft {
        return Err(format!("{} socket pairs need {need} descriptors, the limit is {soft}", a.sockets));
    }
    let (servers, clients) = socket_pairs(a.sockets)?;
    let batch = frame.repeat(a.batch);
    let stop = Arc::new(AtomicBool::new(false));
    let r = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("rawtcp-reader".into())
            .spawn(move || reader(clients, stop))
            .map_err(|e| format!("starting the reader: {e}"))?
    };
    let t0 = Instant::now();
    let dur = Duration::from_secs_f64(a.duration);
    let w = std::thread::Builder::new()
        .name("rawtcp-writer".into())
        .spawn(move || writer(servers, batch, t0 + dur))
        .map_err(|e| format!("starting the writer: {e}"))?;
    let wc = w.join().map_err(|_| "the writer thread panicked".to_string())?;
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    stop.store(true, Ordering::Relaxed);
    let (read, reader_cpu) = r.join().map_err(|_| "the reader thread panicked".to_string())??;
    let wc = wc?;
    let frames = wc.bytes / a.frame_bytes as u64;
    let cpu = wc.cpu.as_secs_f64();
    let per_cpu = |n: u64| if cpu > 0.0 { n as f64 / cpu } else { 0.0 };
    Ok(Result_ {
        tool: format!("tickgate-rawtcp {}", env!("CARGO_PKG_VERSION")),
        sockets: a.sockets,
        batch: a.batch,
        frame_bytes: a.frame_bytes,
        duration_secs: elapsed,
        writes: wc.writes,
        would_block: wc.would_block,
        bytes_written: wc.bytes,
        bytes_read: read,
        frames,
        writes_per_sec: wc.writes as f64 / elapsed,
        frames_per_sec: frames as f64 / elapsed,
        mb_per_sec: wc.bytes as f64 / elapsed / 1e6,
        writer_cpu_secs: cpu,
        writes_per_cpu_sec: per_cpu(wc.writes),
        frames_per_cpu_sec: per_cpu(frames),
        reader_cpu_secs: reader_cpu.as_secs_f64(),
        machine: Machine::current(),
    })
}

fn main() -> ExitCode {
    let a = Args::parse();
    let r = match run(&a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tickgate-rawtcp: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "raw TCP, {} sockets, {} x {} B frames per write, {:.1} s: {:.0} writes/s, {:.0} frames/s, {:.0} MB/s; \
         writer CPU {:.2} s ({:.0} writes/CPU-s, {:.0} frames/CPU-s); reader CPU {:.2} s; {} EAGAIN",
        r.sockets,
        r.batch,
        r.frame_bytes,
        r.duration_secs,
        r.writes_per_sec,
        r.frames_per_sec,
        r.mb_per_sec,
        r.writer_cpu_secs,
        r.writes_per_cpu_sec,
        r.frames_per_cpu_sec,
        r.reader_cpu_secs,
        r.would_block
    );
    if let Some(path) = &a.json {
        let text = match serde_json::to_string_pretty(&r) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tickgate-rawtcp: encoding JSON: {e}");
                return ExitCode::from(3);
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("tickgate-rawtcp: writing {}: {e}", path.display());
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_asked_size_and_a_valid_header() {
        for total in [8, 127, 128, 230, 1000] {
            let f = ws_frame(total).unwrap();
            assert_eq!(f.len(), total);
            assert_eq!(f[0], 0x81);
            let len = if f[1] == 126 {
                usize::from(u16::from_be_bytes([f[2], f[3]])) + 4
            } else {
                usize::from(f[1]) + 2
            };
            assert_eq!(len, total, "{total}");
        }
        assert!(ws_frame(7).is_err());
    }

    #[test]
    fn a_short_run_moves_data() {
        let a = Args { sockets: 4, batch: 2, frame_bytes: 230, duration: 0.2, json: None };
        let r = run(&a).unwrap();
        assert!(r.writes > 0 && r.frames > 0 && r.bytes_read > 0, "{r:?}");
    }
}
