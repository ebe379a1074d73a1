//! `--merge` merges histograms, it does not average percentiles: two reports merged equal
//! one report of both sample sets.

use tickgate_loadtest::report::{Report, merge};
use tickgate_loadtest::stats::{Percentiles, record_ns};

fn report_of(samples: &[u64], updates: u64) -> Report {
    let mut r = Report { updates, updates_per_sec: updates as f64, ..Report::default() };
    r.clients.target = 10;
    r.clients.subscribed = 10;
    for &s in samples {
        record_ns(&mut r.histograms.latency_gateway.0, s);
        record_ns(&mut r.histograms.latency_event.0, s * 2);
    }
    r.latency_gateway = Percentiles::of(&r.histograms.latency_gateway.0);
    r
}

#[test]
fn merged_histograms_equal_one_histogram_of_both_sample_sets() {
    let mut rng = fastrand::Rng::with_seed(3);
    // Two very different distributions: averaging their p99s would be badly wrong.
    let a: Vec<u64> = (0..20_000).map(|_| rng.u64(10_000..50_000)).collect();
    let b: Vec<u64> = (0..5_000).map(|_| rng.u64(1_000_000..90_000_000)).collect();
    let both: Vec<u64> = a.iter().chain(&b).copied().collect();
    let (ra, rb, rboth) = (report_of(&a, 100), report_of(&b, 50), report_of(&both, 150));

    // Through JSON, as --merge reads them.
    let ra: Report = serde_json::from_str(&serde_json::to_string(&ra).unwrap()).unwrap();
    let rb: Report = serde_json::from_str(&serde_json::to_string(&rb).unwrap()).unwrap();
    let m = merge(&[ra.clone(), rb.clone()]).unwrap();

    assert_eq!(m.histograms.latency_gateway.0, rboth.histograms.latency_gateway.0);
    assert_eq!(m.latency_gateway, rboth.latency_gateway);
    assert_eq!(m.latency_event, Percentiles::of(&rboth.histograms.latency_event.0));
    for q in [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
        assert_eq!(
            m.histograms.latency_gateway.0.value_at_quantile(q),
            rboth.histograms.latency_gateway.0.value_at_quantile(q),
            "q {q}"
        );
    }
    let averaged = (ra.latency_gateway.p99 + rb.latency_gateway.p99) / 2;
    assert_ne!(m.latency_gateway.p99, averaged, "merging is not averaging");
    assert_eq!(m.updates, 150);
    assert_eq!(m.updates_per_sec, 150.0);
    assert_eq!(m.clients.target, 20);
    assert_eq!(m.merged_from.len(), 2);
    assert!(m.passed());
    assert!(merge(&[]).is_err());
}
