//! Every configuration key, in one table: its section and name (which are also the TOML
//! table and key, the `TICKGATE_SECTION__NAME` variable and the flag), its type, its default,
//! how its text is parsed and rendered (a [`Kind`]), whether it can change while running, and
//! its documentation (the `--help` text and the field's doc comment).
//!
//! The table is a macro invocation that also declares the [`Config`] structs, one per
//! section, so adding a key is one entry here plus its line in `config/tickgate.toml` (a
//! test checks the file lists every key with its default). Rules that involve more than one
//! key live in [`cross_check`](super::cross_check).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tickgate_feeds::Speed;
use tickgate_feeds::simulator as sim;

use super::value::*;
use super::{AuthMode, FeedSpec, LogFormat, NatsInterest, PinCores, ValueError};

/// One configuration key.
pub struct KeyDef {
    /// `section.name`.
    pub key: &'static str,
    /// The default, as it would be written in TOML (strings without quotes).
    pub default: &'static str,
    /// What it sets and what it bounds (also the `--help` text).
    pub doc: &'static str,
    /// Whether it can be changed while running (`tickgate tune`); others need a restart.
    pub live: bool,
    apply: fn(&mut Config, &str) -> Result<(), ValueError>,
    get: fn(&Config) -> String,
}

impl KeyDef {
    /// Parses `value` into `c` (this key only).
    ///
    /// # Errors
    /// Why the value is refused.
    pub fn apply_to(&self, c: &mut Config, value: &str) -> Result<(), ValueError> {
        (self.apply)(c, value)
    }

    /// This key's value in `c`, rendered as TOML.
    pub fn value_in(&self, c: &Config) -> String {
        (self.get)(c)
    }

    /// The command-line flag for this key: `server.` and `feed.` keys by name (`--rate`),
    /// others with their section (`--admin-listen`); `_` → `-`.
    pub fn flag(&self) -> String {
        match self.key.split_once('.') {
            // `--feed sim|replay:..|ticks:..|nats://..` reads better than `--source`.
            Some(("feed", "source")) => "feed".into(),
            // The two main sections' keys are short flags; others keep their section.
            Some(("server" | "feed", name)) => name.replace('_', "-"),
            _ => self.key.replace(['.', '_'], "-"),
        }
    }

    /// Whether the key is a boolean (its flag may be given without a value: `--replay-loop`).
    pub fn is_bool(&self) -> bool {
        matches!(self.default, "true" | "false")
    }

    /// The environment variable for this key: `TICKGATE_SECTION__NAME`.
    pub fn env_var(&self) -> String {
        format!("TICKGATE_{}", self.key.replace('.', "__").to_ascii_uppercase())
    }
}

/// Looks a key up in [`KEYS`].
pub fn key_def(key: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.key == key)
}

/// A built-in default, parsed. They are constants checked by a unit test
/// (`defaults_are_valid_and_match_the_documented_values`), so a failure is a bug here.
fn builtin<T>(parsed: Result<T, ValueError>, key: &str) -> T {
    match parsed {
        Ok(v) => v,
        Err(e) => panic!("the built-in default of {key} is invalid: {e}"),
    }
}

const MS_1: Duration = Duration::from_millis(1);
const MS_100: Duration = Duration::from_millis(100);
/// TOML integers are 64-bit signed: a larger value could not be written back by `render`.
const TOML_INT_MAX: u64 = i64::MAX as u64;

macro_rules! config_keys {
    (@live live) => { true };
    (@live restart) => { false };
    ($(
        $(#[$smeta:meta])*
        $section:ident: $Struct:ident {
            $( $name:ident: $ty:ty = $default:literal, $kind:expr, $reload:ident, $doc:literal; )*
        }
    )*) => {
        /// The effective, validated configuration: one field per section of the TOML file,
        /// one field per key in each. [`Default`] gives the built-in defaults.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            $( $(#[$smeta])* pub $section: $Struct, )*
        }

        impl Default for Config {
            fn default() -> Config {
                Config { $( $section: $Struct::default(), )* }
            }
        }

        $(
            $(#[$smeta])*
            // Each field's doc is its key's help text, written for a terminal, not markdown.
            #[allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]
            #[derive(Clone, Debug, PartialEq)]
            pub struct $Struct {
                $( #[doc = $doc] pub $name: $ty, )*
            }

            impl Default for $Struct {
                fn default() -> $Struct {
                    $Struct {
                        $( $name: builtin(
                            Kind::parse(&$kind, $default),
                            concat!(stringify!($section), ".", stringify!($name)),
                        ), )*
                    }
                }
            }
        )*

        /// Every configuration key, in file order. `config/tickgate.toml` mirrors this table.
        pub static KEYS: &[KeyDef] = &[$($(
            KeyDef {
                key: concat!(stringify!($section), ".", stringify!($name)),
                default: $default,
                doc: $doc,
                live: config_keys!(@live $reload),
                apply: |c, v| {
                    c.$section.$name = Kind::parse(&$kind, v)?;
                    Ok(())
                },
                get: |c| Kind::render(&$kind, &c.$section.$name),
            },
        )*)*];
    };
}

// Each key: `name: type = "default", kind, live|restart, "doc";`.
config_keys! {
    /// The public listener, its connections and guards, the shards, logging and shutdown (`[server]`).
    server: ServerConfig {
        listen: SocketAddr = "127.0.0.1:9000", Addr, restart,
            "Address of the HTTP/WebSocket listener (IP:PORT; port 0 picks a free port).";
        listen_backlog: i32 = "4096", Int { min: 1, max: 65_535 }, restart,
            "Connections the kernel may queue before the gateway accepts them (listen(2) \
            backlog; Linux caps it at net.core.somaxconn). Bounds a reconnect storm's burst: \
            beyond it, new connections wait in SYN retries.";
        max_connections: usize = "0", Int { min: 0, max: 10_000_000 }, live,
            "Maximum concurrent WebSocket connections; beyond it upgrades get HTTP 503. 0 = the \
            open-file limit (raised to its hard limit at start) minus 100 for listeners, \
            files and the feed.";
        shards: usize = "0", Int { min: 0, max: 256 }, restart,
            "Shard (WebSocket writer) threads, each with its own runtime and clients. 0 = \
            cores - 1, at least 1.";
        pin_cores: PinCores = "auto", Parsed(PhantomData), restart,
            "Pin threads to cores: auto (feed on the first core, shards on the next ones), off, \
            or a list like 0,1,2 (first = feed, rest = shards, wrapping).";
        send_buffer_bytes: usize = "32768", Checked { kind: Int { min: 0, max: 64 << 20 }, check: zero_or_4096 }, restart,
            "Kernel send buffer per socket (SO_SNDBUF; Linux doubles it). Small on purpose: \
            when a client cannot keep up, updates conflate in the gateway (latest value wins) \
            instead of ageing in the kernel. 0 = OS default (autotuned, up to MiBs).";
        max_message_bytes: usize = "65536", Int { min: 128, max: 16 << 20 }, restart,
            "Largest client message, bytes (all fragments together); larger closes with 1009. \
            Bounds per-connection read buffering.";
        max_symbols_per_client: usize = "1000", Int { min: 1, max: 1_000_000 }, live,
            "Symbols one client may hold; more gets error too_many_symbols. Bounds \
            per-client conflation state.";
        max_client_msgs_per_sec: u32 = "50", Int { min: 1, max: 1_000_000 }, live,
            "Client messages per second (token bucket, burst = the same number); over it a \
            message gets error rate_limited and is not executed.";
        default_max_rate: u32 = "0", Int { min: 0, max: 1000 }, live,
            "Quote updates/s per symbol for subscriptions that give no max_rate; 0 = unlimited. \
            Trades are never paced.";
        max_trade_backlog: usize = "1000", Int { min: 1, max: 1_000_000 }, live,
            "Trades per symbol a client taking trades may fall behind before the oldest are \
            dropped for it (it is told exactly how many, in a gap message). Each shard keeps \
            at most this many per symbol whose trades a client takes (~260 bytes each).";
        max_depth: usize = "50", Int { min: 1, max: 1000 }, restart,
            "Order-book levels a side the gateway keeps per symbol and the largest depth a \
            subscribe may ask for (more gets error bad_request); tickgate feed --publish sends \
            this many on the bus. Bounds the book store (~1.6 KB a symbol at 50) and the size of \
            one book message (~2 KB of JSON at 50).";
        default_max_bandwidth: u64 = "0", Int { min: 0, max: 10_000_000_000 }, live,
            "Bytes/s a client may receive unless it sets its own max_bandwidth; 0 = unlimited. \
            Under the cap quotes conflate and trades wait within max_trade_backlog.";
        max_bandwidth_ceiling: u64 = "0", Int { min: 0, max: 10_000_000_000 }, live,
            "Highest max_bandwidth a client may set (higher requests get this); 0 = no ceiling.";
        ping_interval: Duration = "20s", Dur { min: MS_100 }, live,
            "How often the server pings each client.";
        idle_timeout: Duration = "60s", Dur { min: MS_100 }, live,
            "Close (1008 \"idle timeout\") a client that sent nothing, not even a pong, for this \
            long. Must exceed ping_interval.";
        slow_client_timeout: Duration = "30s", Dur { min: MS_100 }, live,
            "Close (1008 \"slow consumer\") a client whose socket accepted no data for this long \
            while updates were waiting.";
        stats_interval: Duration = "10s", Dur { min: MS_100 }, live,
            "Period of the summary log line and of latency histogram merging.";
        ring_capacity: usize = "65536", Checked { kind: Int { min: 16, max: 1 << 26 }, check: power_of_two }, restart,
            "Ring slots (power of two, 128 B each). A shard further behind than this is \
            overrun and heals from the last-value cache.";
        log_level: String = "info", LogFilter, live,
            "Log filter, tracing EnvFilter syntax (e.g. info, debug, tickgate=debug). RUST_LOG, \
            if set, wins.";
        log_format: LogFormat = "pretty", Parsed(PhantomData), restart,
            "Log line format: pretty (human-readable) or json (one object per line).";
        shutdown_grace: Duration = "5s", Dur { min: MS_100 }, live,
            "Longest a graceful shutdown (SIGTERM/SIGINT) may take: clients get close 1001, \
            buffers are flushed, then the process exits 0 even if some never acknowledged.";
        max_connections_per_ip: u32 = "1000", Int { min: 0, max: 10_000_000 }, restart,
            "WebSocket connections one client IP may hold; more get HTTP 429. 0 = no limit. \
            Behind a proxy, list it in server.trusted_proxies (or use server.proxy_protocol) so \
            the limit applies to the real client address.";
        connection_rate_per_ip: u32 = "100", Int { min: 0, max: 10_000_000 }, restart,
            "New connections per second one client IP may open (token bucket, burst = the same); \
            more get HTTP 429 with Retry-After. 0 = no limit. Bounds reconnect storms and floods.";
        handshake_timeout: Duration = "10s", Dur { min: MS_100 }, restart,
            "Time from accepting a TCP connection to a complete HTTP request head, the PROXY \
            header (when server.proxy_protocol is on) and the TLS handshake included; slower \
            clients are dropped (slowloris guard).";
        max_header_bytes: usize = "16384", Int { min: 8192, max: 1 << 20 }, restart,
            "Largest HTTP request head, bytes (request line and headers); larger gets HTTP 431 \
            and the connection is closed. Bounds per-handshake memory.";
        subscribe_timeout: Duration = "30s", Dur { min: Duration::ZERO }, restart,
            "Close (1008 \"no subscription\") a WebSocket that holds no subscription this long \
            after it opened; 0s = never. Frees connections that are opened and left idle.";
        allowed_origins: Vec<String> = "", Origins, restart,
            "Comma-separated Origins allowed to open WebSockets (e.g. https://app.example.com); \
            others get HTTP 403. Empty = any origin. Requests without Origin (non-browser \
            clients) are always allowed.";
        diagnostic_echo: bool = "false", Bool, restart,
            "Serve GET /echo: a WebSocket that echoes every message, over the same connection code \
            as /ws (for the Autobahn conformance suite). Never enable in production.";
        trusted_proxies: Vec<String> = "", Checked { kind: List, check: cidr_entries }, restart,
            "Reverse proxies and load balancers (CIDR list, e.g. 10.0.0.0/8, 127.0.0.1) whose \
            Forwarded / X-Forwarded-For headers name the real client: its address is the \
            right-most one that is not itself a trusted proxy. Headers from other peers are \
            ignored. The client address drives the per-IP guards, logs and /stats.";
        client_ip_header: crate::server::client_ip::ForwardedHeader = "x-forwarded-for", Parsed(PhantomData), restart,
            "Which header the proxies in server.trusted_proxies write the client address into: \
            x-forwarded-for or forwarded (RFC 7239). The other is ignored: a proxy passes \
            through whatever a client puts there.";
        proxy_protocol: crate::server::proxy_protocol::Mode = "off", Parsed(PhantomData), restart,
            "PROXY protocol header (HAProxy, cloud load balancers) expected before TLS and HTTP \
            on the public listener: off, v1, v2 or any. When on, connections without a valid \
            header within server.handshake_timeout are closed, and the header's source address \
            is the client's (only from peers in server.trusted_proxies, if that is set).";
        tls_cert: Option<PathBuf> = "", OptPath, restart,
            "PEM certificate chain: with server.tls_key, the listener serves https:// and wss:// \
            (rustls). Reloaded with the key on SIGHUP; existing connections keep theirs.";
        tls_key: Option<PathBuf> = "", OptPath, restart,
            "PEM private key (PKCS#8, PKCS#1 or SEC1) for server.tls_cert.";
    }
    /// Client authentication (`[auth]`).
    auth: AuthConfig {
        mode: AuthMode = "none", Parsed(PhantomData), restart,
            "Client authentication: none, or token (a JWT with sub, exp and a symbols claim, \
            given as ?token=, Authorization: Bearer, or a Sec-WebSocket-Protocol entry \
            tickgate.token.<JWT>), verified with the keys of auth.secret_file, \
            auth.public_key_file, auth.jwks_file, auth.jwks_url and auth.issuers. Without a \
            valid token the handshake gets HTTP 401.";
        secret_file: Option<PathBuf> = "", OptPath, restart,
            "File holding an HS256 token secret (at least 32 bytes), else the environment \
            variable TICKGATE_AUTH_SECRET; needed only when no public key source is set. \
            Re-read on change and on SIGHUP. Never put the secret on the command line.";
        public_key_file: Option<PathBuf> = "", OptPath, restart,
            "PEM file of public keys (RSA, EC P-256/P-384 or Ed25519 SubjectPublicKeyInfo). A \
            `# kid=ID alg=ALG` line just before a key names it; otherwise RSA keys verify \
            RS256, EC keys their curve's ES256/ES384, Ed25519 keys EdDSA. Re-read on change \
            and on SIGHUP.";
        jwks_file: Option<PathBuf> = "", OptPath, restart,
            "JWKS document on disk (the keys an identity provider publishes). Re-read on change \
            and on SIGHUP.";
        jwks_url: String = "", OptUrl, restart,
            "http:// or https:// URL of the identity provider's JWKS (e.g. Keycloak's \
            .../protocol/openid-connect/certs, Auth0's /.well-known/jwks.json). Fetched at \
            start and every auth.jwks_refresh, and when a token names an unknown kid; while it \
            is down the last good keys stay in use.";
        jwks_ca_file: Option<PathBuf> = "", OptPath, restart,
            "PEM CA certificates trusted for https:// JWKS endpoints in addition to the \
            system's (a private CA). Empty = the system's roots only.";
        jwks_refresh: Duration = "5m", Dur { min: Duration::from_secs(1) }, restart,
            "How often JWKS URLs are fetched again (so retired keys stop verifying within this \
            time).";
        jwks_min_refresh: Duration = "30s", Dur { min: Duration::from_secs(1) }, restart,
            "Shortest time between two fetches of one JWKS URL triggered by tokens with unknown \
            kids: bounds how hard a flood of made-up kids can make the gateway hit the identity \
            provider (one fetch per URL per this time).";
        issuer: String = "", Text { max: 1024 }, restart,
            "Issuer (iss) the keys of secret_file, public_key_file, jwks_file and jwks_url \
            belong to: tokens verified with them must carry it. Empty = those keys accept \
            tokens of any issuer, or none.";
        issuers: Vec<String> = "", Checked { kind: List, check: issuer_entries }, restart,
            "More issuers, each with its own keys: a list of \"ISSUER SOURCE\" entries where \
            SOURCE is a JWKS URL (http/https), a .pem file of public keys or a JWKS file. A \
            token whose iss is listed is verified with that issuer's keys only (keys are \
            looked up by issuer and kid, never kid alone).";
        audience: Vec<String> = "", List, restart,
            "Accepted audiences: tokens must carry one of them in aud. Empty = aud not checked.";
        leeway: Duration = "5s", Dur { min: Duration::ZERO }, restart,
            "Clock skew tolerated on exp and nbf.";
        symbols_claim: String = "symbols", Text { max: 256 }, restart,
            "Claim holding the client's symbol entitlements: an array of names or patterns \
            (AAPL, BTC*, *) or one space-separated string. Identity providers put custom \
            claims under namespaced names (https://example.com/symbols); a dotted path \
            (resource_access.tickgate.roles) reaches a nested claim.";
    }
    /// The admin listener (`[admin]`).
    admin: AdminConfig {
        listen: Option<SocketAddr> = "127.0.0.1:9001", AddrOrOff, restart,
            "Admin listener (live tuning with `tickgate tune`, /config, /metrics, /stats): IP:PORT, \
            or off. Keep it on loopback or a private network.";
        token_file: Option<PathBuf> = "", OptPath, restart,
            "File holding the bearer token the admin listener requires (empty = none, unless \
            TICKGATE_ADMIN_TOKEN is set). Never put the token itself on the command line.";
    }
    /// Where ticks come from, replay pacing, the NATS bus and the simulator (`[feed]`).
    feed: FeedConfig {
        source: FeedSpec = "sim", Parsed(PhantomData), restart,
            "Where ticks come from: sim (the embedded simulator), replay:PATH[,PATH...] (Binance \
            capture files, .gz or plain, merged by capture time), ticks:FILE (a file made by \
            `tickgate record`), or nats://HOST:PORT (ticks published by `tickgate feed`).";
        replay_speed: Speed = "1", ReplaySpeed, restart,
            "Pace of replay: and ticks: sources: 1 = the recording's own spacing, 10 = ten \
            times faster, max = as fast as the gateway takes them.";
        replay_loop: bool = "false", Bool, restart,
            "Start a replay again at its end (time and seq keep rising); false = the feed ends.";
        nats_prefix: String = "ticks", SubjectPrefix, restart,
            "NATS subject prefix: each tick goes to <prefix>.<SYMBOL>, the universe to \
            <prefix>.$universe.";
        nats_stream: String = "TICKS", StreamName, restart,
            "JetStream stream over <prefix>.> keeping one message (the latest tick) per subject; \
            the publisher creates it if missing. Bounds the bus's storage to one tick per symbol.";
        nats_interest: NatsInterest = "all", Parsed(PhantomData), restart,
            "With a nats:// source, which ticks the gateway takes from the bus: all (one \
            subscription to <prefix>.>, every tick of every symbol) or subscribed (one \
            subscription per symbol its clients hold, opened with the first client, with the \
            symbol's last value from JetStream, and closed feed.nats_linger after the last one \
            leaves). Bounds the bus traffic per gateway to what its clients watch.";
        nats_linger: Duration = "5s", Dur { min: Duration::ZERO }, restart,
            "With feed.nats_interest = subscribed: how long a symbol's bus subscription outlives \
            its last client, so clients that come and go do not churn the bus.";
        nats_wait: Duration = "30s", Dur { min: MS_100 }, restart,
            "How long serve --feed nats:// waits at start for NATS and for the publisher's \
            universe before giving up (exit 1).";
        symbols: usize = "0", Int { min: 0, max: 1_000_000 }, restart,
            "Symbols in the simulated universe; 0 = the universe file's (feeds/data); more adds \
            generated names, fewer truncates.";
        rate: u64 = "20000", Int { min: 0, max: sim::MAX_RATE }, live,
            "Simulated ticks per second across all symbols; 0 = as fast as possible.";
        seed: u64 = "1", Int { min: 0, max: TOML_INT_MAX }, restart,
            "Seed of the simulated feed; the same seed gives the same ticks.";
        ticks: Option<u64> = "0", OptionalCount { max: TOML_INT_MAX }, restart,
            "Stop the feed after this many ticks (finite runs for tests and benchmarks); 0 = \
            never.";
        burst_factor: u32 = "1", Int { min: 1, max: sim::MAX_BURST_FACTOR }, restart,
            "Rate multiplier during bursts; 1 = no bursts.";
        burst_every: Duration = "10s", Dur { min: MS_1 }, restart,
            "A burst starts this often (with burst_factor > 1).";
        burst_len: Duration = "500ms", Dur { min: Duration::ZERO }, restart,
            "Each burst lasts this long.";
        trade_percent: u8 = "20", Int { min: 0, max: 100 }, restart,
            "Share of simulated events that are trades, percent (the rest are quotes).";
        volatility: f64 = "0.3", Float { min: 0.0, max: sim::MAX_VOLATILITY }, restart,
            "Annualized volatility of simulated mid prices (0.3 = 30%).";
        zipf_exponent: f64 = "1.1", Float { min: 0.0, max: sim::MAX_ZIPF_EXPONENT }, restart,
            "Skew of symbol activity (Zipf exponent; a few hot symbols carry most ticks); 0 = \
            uniform.";
        depth_levels: u16 = "20", Int { min: 0, max: sim::MAX_DEPTH_LEVELS }, restart,
            "Order-book levels a side the simulator keeps for every symbol (a depth ladder whose \
            touch is the quote; each event also changes its book); 0 = no books. Clients see at \
            most server.max_depth of them.";
    }
}
