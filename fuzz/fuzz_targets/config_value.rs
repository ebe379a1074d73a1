//! Configuration values (`tickgate::config`): every key's parser (`KeyDef::apply_to`) and the
//! TOML file parser (`Layers::add_toml`, which takes the file's text, no disk needed).
//! Values come from flags, environment variables, config files and the admin `tune` call.
//!
//! Input layout: byte 0 < 0x80 picks a key (`KEYS[b % KEYS.len()]`) and the rest is its
//! value (UTF-8); byte 0 >= 0x80 makes the rest a whole TOML file.
//!
//! Invariants checked:
//! - no parser panics, or takes long (libFuzzer's `-timeout`);
//! - a refused value has a reason, and `Layers::build` refuses it the same way, naming the
//!   key, the value and the source;
//! - an accepted value is stable: rendering the configuration as TOML (`render`) and reading
//!   that back with `Layers::add_toml` + `build` gives the same `Config` (or, if the value
//!   breaks a cross-key rule, the same rule is reported by `build`);
//! - a TOML file that builds renders to a file that builds to the same `Config`.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tickgate::config::{Config, ConfigError, KEYS, Layers, Source, cross_check, render};

/// Renders `c` as a TOML file (every key set) and reads it back.
fn round_trip(c: &Config, what: &str) {
    let sources: BTreeMap<&'static str, Source> = KEYS.iter().map(|k| (k.key, Source::Flag)).collect();
    let text = render(c, &sources);
    let mut l = Layers::new();
    if let Err(e) = l.add_toml(&text) {
        panic!("{what}: the rendered configuration is not a valid config file: {e}\n{text}");
    }
    match (cross_check(c), l.build()) {
        (Ok(()), Ok((back, _))) => assert_eq!(&back, c, "{what}: render/read changed the config\n{text}"),
        (Ok(()), Err(e)) => panic!("{what}: the rendered configuration does not build: {e}\n{text}"),
        (Err((key, _)), Err(ConfigError::Invalid { key: k, .. })) => {
            assert_eq!(k, key, "{what}: a different key is blamed after the round trip");
        }
        (Err(e), Ok(_)) => panic!("{what}: the cross-key rule {e:?} is lost in the round trip\n{text}"),
        (Err(_), Err(e)) => panic!("{what}: unexpected error after the round trip: {e}\n{text}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if *sel < 0x80 {
        let def = &KEYS[usize::from(*sel) % KEYS.len()];
        static DEFAULTS: OnceLock<Config> = OnceLock::new();
        let mut c = DEFAULTS.get_or_init(Config::default).clone();
        match def.apply_to(&mut c, text) {
            Ok(()) => round_trip(&c, def.key),
            Err(reason) => {
                assert!(!reason.to_string().is_empty(), "{}: an error without a reason", def.key);
                // The same refusal through the layers, naming the key, the value and the source.
                let mut l = Layers::new();
                l.set(def.key, text.to_string(), Source::Flag).expect("a key of KEYS");
                match l.build() {
                    Err(ConfigError::Invalid { key, value, origin, reason: r }) => {
                        assert_eq!((key.as_str(), value.as_str(), origin), (def.key, text, Source::Flag));
                        assert_eq!(r, reason);
                    }
                    other => panic!("{}: apply_to refused {text:?} but build gave {other:?}", def.key),
                }
            }
        }
    } else {
        let mut l = Layers::new();
        if l.add_toml(text).is_err() {
            return;
        }
        if let Ok((c, _)) = l.build() {
            round_trip(&c, "config file");
        }
    }
});
