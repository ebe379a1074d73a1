//! Shared helpers: an in-process gateway on port 0 and load-test options aimed at it.

use std::time::Duration;

use tickgate::config::{Layers, Source};
use tickgate::feed::{Feed, simulated_source};
use tickgate::gateway::Gateway;
use tickgate_loadtest::options::Progress;
use tickgate_loadtest::ws::url::WsUrl;
use tickgate_loadtest::{Options, ProfileName};

/// Starts a gateway on 127.0.0.1:0 with `overrides` (config keys).
pub fn gateway(overrides: &[(&str, &str)]) -> Gateway {
    let mut l = Layers::new();
    for (k, v) in [
        ("server.listen", "127.0.0.1:0"),
        ("admin.listen", "127.0.0.1:0"),
        ("server.pin_cores", "off"),
        ("server.shards", "1"),
        ("server.log_level", "warn"),
    ]
    .iter()
    .chain(overrides)
    {
        l.set(k, v.to_string(), Source::Flag).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    let (cfg, sources) = l.build().unwrap_or_else(|e| panic!("{e}"));
    let feed = simulated_source(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    Gateway::start(cfg, sources, Feed::local(feed)).unwrap_or_else(|e| panic!("gateway did not start: {e:#}"))
}

/// The smoke profile against `gw`, shortened to `secs`, quiet, with a fixed seed.
pub fn smoke(gw: &Gateway, secs: f64) -> Options {
    let url = WsUrl::parse(&format!("ws://{}/ws", gw.local_addr())).unwrap();
    let mut o = Options::new(Some(ProfileName::Smoke), vec![url]);
    o.duration = Duration::from_secs_f64(secs);
    o.threads = 2;
    o.progress = Progress::Off;
    o.seed = 42;
    o.command_line = "test".into();
    o
}
