//! Process signals: SIGINT/SIGTERM stop, SIGHUP reloads TLS and token keys, a second stop signal exits at
//! once. [`serve_until_terminated`] is `tickgate serve`'s main loop; the feed-only commands
//! (`record`, `feed`) use [`stop_flag_on_signal`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::gateway::Gateway;

/// Exit status after a second stop signal during shutdown (128 + SIGINT).
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// Waits for SIGINT or SIGTERM.
pub async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `gateway` until SIGINT/SIGTERM, reloading its TLS certificate on each SIGHUP, then
/// shuts it down. The shutdown is bounded by `server.shutdown_grace`; half a second past it
/// this returns anyway, and a second stop signal exits the process at once (status 130).
///
/// # Errors
/// If the signal runtime cannot be built.
pub fn serve_until_terminated(gateway: Gateway) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut hup) = signal(SignalKind::hangup()) {
                let stop = terminate();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = hup.recv() => {
                            match gateway.reload_tls() {
                                Ok(true) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                                Ok(false) => tracing::info!("SIGHUP: no TLS configured; nothing to reload"),
                                Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the current certificate"),
                            }
                            if gateway.reload_keys() {
                                tracing::info!("SIGHUP: token key files re-read, JWKS URLs fetched again");
                            }
                        }
                    }
                }
            }
        }
        terminate().await;
    });
    tracing::info!("signal received: shutting down (a second signal exits at once)");
    std::thread::spawn(move || {
        rt.block_on(terminate());
        eprintln!("second signal: exiting now");
        std::process::exit(EXIT_SECOND_SIGNAL);
    });
    let grace = gateway.app().live.config().server.shutdown_grace;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        gateway.shutdown();
        let _ = done_tx.send(());
    });
    // The shutdown itself is bounded by shutdown_grace; this wait is the backstop.
    if done_rx.recv_timeout(grace + Duration::from_millis(500)).is_err() {
        tracing::warn!("shutdown_grace elapsed; exiting with connections still closing");
    }
    Ok(())
}

/// A flag set on SIGINT/SIGTERM, for the commands that run a feed without a gateway.
///
/// # Errors
/// If the signal thread or its runtime cannot start.
pub fn stop_flag_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("tickgate-signal".into()).spawn(move || {
        rt.block_on(terminate());
        s.store(true, Ordering::Release);
        eprintln!("signal received: finishing");
    })?;
    Ok(stop)
}
