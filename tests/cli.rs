//! The `tickgate` command line, run as a real process: help text, `config check`, and bad
//! configuration from each source exiting non-zero with a message naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

fn tickgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickgate"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TICKGATE_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tickgate")
}

/// One bad-configuration case: arguments, environment, and what stderr must mention.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn serve_help_lists_every_key_with_its_default_and_env_name() {
    let o = tickgate(&["serve", "--help"], &[]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    for k in tickgate::config::KEYS {
        assert!(out.contains(&format!("--{}", k.flag())), "--{} missing from help", k.flag());
        assert!(out.contains(&format!("[default: {}]", k.default)), "default of {} missing", k.key);
        assert!(out.contains(&k.env_var()), "env name of {} missing", k.key);
    }
}

/// Compares `got` with the committed file `tests/golden/NAME`; with `TICKGATE_UPDATE_GOLDEN=1`
/// (or when the file is missing) writes it instead. These pin what users see of the
/// configuration (every flag, env name, TOML key, default and help text) so that refactoring
/// the config code cannot change it unnoticed; a deliberate change rewrites the file.
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("TICKGATE_UPDATE_GOLDEN").is_some() || !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    if want != got {
        let first = want.lines().zip(got.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} changed at line {}:\n want: {:?}\n  got: {:?}\n(if deliberate, rerun with TICKGATE_UPDATE_GOLDEN=1)",
            first + 1,
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}

#[test]
fn config_print_and_serve_help_are_pinned() {
    let o = tickgate(&["config", "print"], &[]);
    assert!(o.status.success());
    golden("config-print.toml", &text(&o).0);
    let o = tickgate(&["serve", "--help"], &[]);
    assert!(o.status.success());
    golden("serve-help.txt", &text(&o).0);
    // Every keyed command offers the same key flags as serve.
    let flags = |args: &[&str]| -> Vec<String> {
        let out = text(&tickgate(args, &[])).0;
        let mut f: Vec<String> = out
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .map(|l| l.split([' ', '=']).next().unwrap_or("").to_string())
            .filter(|f| !matches!(f.as_str(), "out" | "publish" | "help" | "version"))
            .collect();
        f.sort();
        f
    };
    let serve = flags(&["serve", "--help"]);
    assert!(serve.len() > 40, "{serve:?}");
    for args in [
        &["record", "--help"][..],
        &["feed", "--help"],
        &["config", "check", "--help"],
        &["config", "print", "--help"],
    ] {
        assert_eq!(flags(args), serve, "{args:?}");
    }
}

#[test]
fn burst_window_is_only_checked_when_bursts_are_on() {
    // Without bursts (factor 1) the window is unused: config check and serve agree.
    let o = tickgate(&["config", "check", "--burst-len", "0s"], &[]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("burst_len = \"0s\"  # flag"));
}

#[test]
fn config_check_validates_the_shipped_file_and_shows_sources() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tickgate.toml");
    let o = tickgate(&["config", "check", file, "--rate", "5"], &[("TICKGATE_FEED__SEED", "9")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("rate = 5  # flag"), "{out}");
    assert!(out.contains("seed = 9  # env"), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:9000\"  # file"), "{out}");
}

#[test]
fn bad_configuration_from_any_source_exits_2_naming_the_key_and_reason() {
    let dir = std::env::temp_dir().join(format!("tickgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad.toml");
    std::fs::write(&bad_file, "[server]\nshards = \"many\"\n").unwrap();
    let typo_file = dir.join("typo.toml");
    std::fs::write(&typo_file, "[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let bad = bad_file.to_str().unwrap();
    let typo = typo_file.to_str().unwrap();
    let cases: &[Case] = &[
        (&["serve", "--rate", "fast"], &[], &["feed.rate", "fast", "flag", "whole number"]),
        (&["serve", "--set", "server.ping_interval=5"], &[], &["server.ping_interval", "missing unit"]),
        (&["serve", "--set", "nope.key=1"], &[], &["unknown config key", "nope.key"]),
        (&["serve"], &[("TICKGATE_SERVER__LISTEN", "nowhere")], &["server.listen", "env", "IP:PORT"]),
        (&["serve"], &[("TICKGATE_SERVER__LISTN", "x")], &["TICKGATE_SERVER__LISTN", "did you mean"]),
        (&["serve", "--config", bad], &[], &["server.shards", "many", "file", "whole number"]),
        (&["serve", "--config", typo], &[], &["server.listen_addr", "did you mean `server.listen`"]),
        (&["serve", "--config", "/nonexistent/tickgate.toml"], &[], &["/nonexistent/tickgate.toml"]),
        (&["config", "check", bad], &[], &["server.shards"]),
        (&["serve", "--feed", "kafka://x"], &[], &["feed.source", "kafka://x", "replay:PATH"]),
        (&["serve", "--feed", "replay:"], &[], &["feed.source", "at least one capture file"]),
        (&["serve", "--replay-speed", "0"], &[], &["feed.replay_speed", "max"]),
        (&["serve", "--replay-loop", "maybe"], &[], &["feed.replay_loop", "true or false"]),
        (&["serve", "--nats-prefix", "a.*"], &[], &["feed.nats_prefix", "dot-separated"]),
        (&["record", "--feed", "nope", "--out", "/tmp/x"], &[], &["feed.source"]),
        // The simulator's own rules, checked by `config check` too (not first at `serve`).
        (
            &["config", "check", "--burst-factor", "2", "--burst-len", "0s"],
            &[],
            &["feed.burst_len", "burst period"],
        ),
        (
            &["serve", "--burst-factor", "2", "--burst-every", "1s", "--burst-len", "2s"],
            &[],
            &["feed.burst_len", "flag"],
        ),
        (&["config", "check", "--zipf-exponent", "11"], &[], &["feed.zipf_exponent", "between 0 and 10"]),
        (&["serve", "--listen-backlog", "0"], &[], &["server.listen_backlog", "between 1 and 65535"]),
    ];
    for (args, env, needles) in cases {
        let o = tickgate(args, env);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{args:?} {env:?}: {n:?} not in {err:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn record_writes_a_replayable_file_and_refuses_endless_feeds_without_a_limit() {
    let dir = std::env::temp_dir().join(format!("tickgate-cli-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("sim.ticks");
    let path = out.to_str().unwrap();
    let o = tickgate(&["record", "--feed", "sim", "--out", path], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--ticks"), "{}", text(&o).1);
    let o = tickgate(&["record", "--feed", "sim", "--symbols", "20", "--ticks", "500", "--out", path], &[]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).1.contains("recorded 500 ticks of 20 symbols"), "{}", text(&o).1);
    // The file records again from itself: a ticks: feed is finite, no --ticks needed.
    let again = dir.join("again.ticks");
    let o = tickgate(&["record", "--feed", &format!("ticks:{path}"), "--out", again.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&again).unwrap(),
        "record → replay → record is identical"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn openssl(args: &[&str]) {
    let o = Command::new("openssl").args(args).output().expect("the openssl tool (apt-get install openssl)");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn token_signs_with_a_private_key_and_verify_says_which_key_accepts_it_or_why_not() {
    let dir = std::env::temp_dir().join(format!("tickgate-cli-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (key, public) = (dir.join("ec.key"), dir.join("ec.pub.pem"));
    let (k, p) = (key.to_str().unwrap(), public.to_str().unwrap());
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k]);
    openssl(&["pkey", "-in", k, "-pubout", "-out", p]);
    let pem = std::fs::read_to_string(&public).unwrap();
    std::fs::write(&public, format!("# kid=ops-1\n{pem}")).unwrap();
    let config = dir.join("tickgate.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"token\"\npublic_key_file = \"{p}\"\nissuer = \"https://idp.example/\"\n\
             audience = [\"tickgate\"]\nsymbols_claim = \"https://tickgate.example/symbols\"\n"
        ),
    )
    .unwrap();
    let mint = |extra: &[&str]| {
        let mut args =
            vec!["token", "--sub", "ops", "--symbols", "AAPL,BTC*", "--key-file", k, "--kid", "ops-1"];
        args.extend_from_slice(extra);
        let o = tickgate(&args, &[]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        out.trim().to_string()
    };
    let good = mint(&[
        "--iss",
        "https://idp.example/",
        "--aud",
        "tickgate",
        "--symbols-claim",
        "https://tickgate.example/symbols",
    ]);
    let o = tickgate(&["token", "--verify", &good, "--config", config.to_str().unwrap()], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.starts_with("accepted"), "{out}");
    assert!(
        out.contains("https://idp.example/") && out.contains("kid ops-1") && out.contains("ES256"),
        "{out}"
    );
    assert!(out.contains("\"BTC*\""), "{out}");

    // The audience is missing: refused, exit 1, with the reason.
    let no_aud =
        mint(&["--iss", "https://idp.example/", "--symbols-claim", "https://tickgate.example/symbols"]);
    let o = tickgate(&["token", "--verify", &no_aud, "--config", config.to_str().unwrap()], &[]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("refused") && out.contains("missing claim aud"), "{out}");

    // JSON for scripts.
    let o = tickgate(&["token", "--verify", &good, "--config", config.to_str().unwrap(), "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["accepted"].as_bool(), v["key"]["alg"].as_str()), (Some(true), Some("ES256")), "{v}");

    // An algorithm the key cannot sign, and a key file that is not a key: exit 2, clear message.
    let o = tickgate(&["token", "--sub", "a", "--symbols", "*", "--key-file", k, "--alg", "RS256"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("cannot sign RS256"), "{}", text(&o).1);
    let o = tickgate(&["token", "--sub", "a", "--symbols", "*", "--key-file", p], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("not a private key"), "{}", text(&o).1);
    let _ = std::fs::remove_dir_all(&dir);
}
