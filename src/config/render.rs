//! Rendering the effective configuration as TOML (`tickgate config print|check`, the admin
//! `GET /config`): every key, in table order, each value from its key's own renderer and
//! annotated with where it came from. What this writes, [`Layers`](super::Layers) reads back
//! to the same [`Config`].

use super::{Config, KEYS, Source, Sources};

/// Renders the effective configuration as TOML, each key annotated with its source.
pub fn render(c: &Config, sources: &Sources) -> String {
    let mut out = String::new();
    let mut section = "";
    for k in KEYS {
        let (sec, name) = k.key.split_once('.').unwrap_or(("", k.key));
        if sec != section {
            if !section.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{sec}]\n"));
            section = sec;
        }
        let src = sources.get(k.key).copied().unwrap_or(Source::Default);
        out.push_str(&format!("{name} = {}  # {src}\n", k.value_in(c)));
    }
    out
}
