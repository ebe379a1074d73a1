//! The binary itself: exit codes, `--merge` of report files, `--print-gateway-args`,
//! `--markdown-row`.

use std::process::Command;

use tickgate_loadtest::report::Report;
use tickgate_loadtest::stats::record_ns;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tickgate-loadtest"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tickgate-loadtest-cli-{}-{name}", std::process::id()))
}

#[test]
fn refuses_more_clients_than_the_open_file_limit_before_connecting() {
    // Port 1: nothing listens; the refusal must come before any connection attempt.
    let out = bin().args(["--url", "ws://127.0.0.1:1/ws", "--clients", "50000000", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open-file limit") && err.contains("--merge"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn unreachable_gateway_is_exit_code_3() {
    let out = bin().args(["--url", "ws://127.0.0.1:1/ws", "--clients", "1", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn merges_report_files_and_prints_rows() {
    let (a, b, merged) = (tmp("a.json"), tmp("b.json"), tmp("merged.json"));
    for (path, base) in [(&a, 1_000u64), (&b, 5_000_000)] {
        let mut r = Report::default();
        r.clients.target = 5;
        r.clients.subscribed = 5;
        r.updates = 10;
        for i in 0..100 {
            record_ns(&mut r.histograms.latency_gateway.0, base + i);
        }
        r.save(path).unwrap();
    }
    let out = bin().arg("--merge").arg(&a).arg(&b).arg("--json").arg(&merged).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("merged from 2 reports") && table.contains("PASS"), "{table}");
    let m = Report::load(&merged).unwrap();
    assert_eq!(m.histograms.latency_gateway.0.len(), 200);
    assert_eq!(m.updates, 20);
    let row = bin().arg("--markdown-row").arg(&merged).output().unwrap();
    assert!(String::from_utf8_lossy(&row.stdout).starts_with("| "));
    for p in [a, b, merged] {
        let _ = std::fs::remove_file(p);
    }
    let args = bin().args(["--profile", "dashboard", "--print-gateway-args"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&args.stdout).trim(),
        "--symbols 5000 --rate 20000 --max-connections-per-ip 0 --connection-rate-per-ip 0"
    );
}
