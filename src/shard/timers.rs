//! A connection's deadlines, decided without I/O: heartbeat pings, the idle, slow-consumer
//! and subscribe timeouts, and token expiry.
//!
//! [`ConnTimers`] holds when the client last sent something, when its socket last made
//! progress and when the next ping is due. Given the time, the live [`Timeouts`] and
//! whether the client is blocked (its socket full), [`ConnTimers::next`] says when to look
//! again and [`ConnTimers::due`] what to do then. The connection task only sleeps until
//! that time and carries out the action, so every timeout rule is tested here with a fake
//! clock.
//!
//! Times are monotonic nanoseconds (the task's `Instant`s mapped onto a number), except the
//! token's expiry, which is wall-clock seconds (the issuer's `exp`) converted by the caller.

/// Close reason for clients that make no write progress.
pub const SLOW_CONSUMER: &str = "slow consumer";
/// Close reason for clients that send nothing.
pub const IDLE_TIMEOUT: &str = "idle timeout";
/// Close reason for clients that never subscribe (`server.subscribe_timeout`).
pub const NO_SUBSCRIPTION: &str = "no subscription";
/// Close reason for clients whose token expired without a refresh.
pub const TOKEN_EXPIRED: &str = "token expired";

/// The far future (deadline off).
pub const NEVER: u64 = u64::MAX;

/// The live timeouts, in ns (read where used, so a live change applies at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Server ping period.
    pub ping_ns: u64,
    /// Close a client that sent nothing for this long.
    pub idle_ns: u64,
    /// Close a blocked client whose socket took nothing for this long.
    pub slow_ns: u64,
}

/// What a deadline asks the connection to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a ping (the client is not blocked).
    Ping,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

/// One connection's timer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnTimers {
    last_rx_ns: u64,
    last_progress_ns: u64,
    next_ping_ns: u64,
    /// Close then if the client holds no subscription (checked once; NEVER once checked).
    subscribe_by_ns: u64,
}

impl ConnTimers {
    /// A connection opened at `now_ns`; `subscribe_timeout_ns` 0 means no subscribe deadline.
    pub fn new(now_ns: u64, t: &Timeouts, subscribe_timeout_ns: u64) -> ConnTimers {
        ConnTimers {
            last_rx_ns: now_ns,
            last_progress_ns: now_ns,
            next_ping_ns: now_ns.saturating_add(t.ping_ns),
            subscribe_by_ns: if subscribe_timeout_ns == 0 {
                NEVER
            } else {
                now_ns.saturating_add(subscribe_timeout_ns)
            },
        }
    }

    /// The client sent something (any frame, a pong included).
    pub fn received(&mut self, now_ns: u64) {
        self.last_rx_ns = now_ns;
    }

    /// The socket took bytes, or the client is not blocked: it is making progress.
    pub fn progressed(&mut self, now_ns: u64) {
        self.last_progress_ns = now_ns;
    }

    /// When to call [`ConnTimers::due`] next. `token_deadline_ns` is the token's expiry on
    /// the same clock ([`NEVER`] without token auth).
    pub fn next(&mut self, now_ns: u64, t: &Timeouts, blocked: bool, token_deadline_ns: u64) -> u64 {
        if !blocked {
            self.last_progress_ns = now_ns;
        }
        // A shorter ping period set live applies from now.
        self.next_ping_ns = self.next_ping_ns.min(now_ns.saturating_add(t.ping_ns));
        let idle_at = self.last_rx_ns.saturating_add(t.idle_ns);
        let slow_at = if blocked { self.last_progress_ns.saturating_add(t.slow_ns) } else { NEVER };
        self.next_ping_ns.min(idle_at).min(slow_at).min(self.subscribe_by_ns).min(token_deadline_ns)
    }

    /// What is due at `now_ns`, most severe first: token expiry, no subscription, idle,
    /// slow consumer, then a ping (only when not blocked; a blocked client's ping is skipped).
    pub fn due(
        &mut self,
        now_ns: u64,
        t: &Timeouts,
        blocked: bool,
        subscribed: bool,
        token_deadline_ns: u64,
    ) -> Option<TimerAction> {
        use crate::protocol::frame::close_code::POLICY_VIOLATION;
        if now_ns >= token_deadline_ns {
            return Some(TimerAction::Close(POLICY_VIOLATION, TOKEN_EXPIRED));
        }
        if now_ns >= self.subscribe_by_ns {
            self.subscribe_by_ns = NEVER;
            if !subscribed {
                return Some(TimerAction::Close(POLICY_VIOLATION, NO_SUBSCRIPTION));
            }
        }
        if now_ns >= self.last_rx_ns.saturating_add(t.idle_ns) {
            return Some(TimerAction::Close(POLICY_VIOLATION, IDLE_TIMEOUT));
        }
        if blocked && now_ns >= self.last_progress_ns.saturating_add(t.slow_ns) {
            return Some(TimerAction::Close(POLICY_VIOLATION, SLOW_CONSUMER));
        }
        if now_ns >= self.next_ping_ns {
            self.next_ping_ns = now_ns.saturating_add(t.ping_ns);
            if !blocked {
                return Some(TimerAction::Ping);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::close_code::POLICY_VIOLATION;

    const S: u64 = 1_000_000_000;
    const T: Timeouts = Timeouts { ping_ns: 20 * S, idle_ns: 60 * S, slow_ns: 30 * S };

    fn close(reason: &'static str) -> Option<TimerAction> {
        Some(TimerAction::Close(POLICY_VIOLATION, reason))
    }

    #[test]
    fn pings_every_period_while_the_client_answers() {
        let mut c = ConnTimers::new(0, &T, 0);
        assert_eq!(c.next(0, &T, false, NEVER), 20 * S);
        assert_eq!(c.due(19 * S, &T, false, true, NEVER), None);
        assert_eq!(c.due(20 * S, &T, false, true, NEVER), Some(TimerAction::Ping));
        c.received(21 * S); // the pong
        assert_eq!(c.next(21 * S, &T, false, NEVER), 40 * S);
        assert_eq!(c.due(40 * S, &T, false, true, NEVER), Some(TimerAction::Ping));
    }

    #[test]
    fn a_silent_client_is_closed_idle() {
        let mut c = ConnTimers::new(0, &T, 0);
        for at in [20, 40] {
            assert_eq!(c.due(at * S, &T, false, true, NEVER), Some(TimerAction::Ping));
        }
        assert_eq!(c.next(40 * S, &T, false, NEVER), 60 * S);
        assert_eq!(c.due(60 * S, &T, false, true, NEVER), close(IDLE_TIMEOUT));
    }

    #[test]
    fn a_blocked_client_is_closed_slow_unless_its_socket_takes_bytes() {
        let mut c = ConnTimers::new(0, &T, 0);
        c.next(10 * S, &T, false, NEVER); // last seen unblocked at 10 s
        c.received(10 * S);
        assert_eq!(c.next(11 * S, &T, true, NEVER), 20 * S, "the ping comes first");
        assert_eq!(c.due(20 * S, &T, true, true, NEVER), None, "no ping to a blocked client");
        assert_eq!(c.next(21 * S, &T, true, NEVER), 40 * S, "slow at 10 s + 30 s");
        c.progressed(35 * S); // the socket took some bytes
        c.received(35 * S);
        assert_eq!(c.next(36 * S, &T, true, NEVER), 40 * S, "the next ping (skipped again: blocked)");
        assert_eq!(c.due(64 * S, &T, true, true, NEVER), None);
        assert_eq!(c.due(65 * S, &T, true, true, NEVER), close(SLOW_CONSUMER));
    }

    #[test]
    fn subscribe_timeout_is_checked_once() {
        let mut c = ConnTimers::new(0, &T, 5 * S);
        assert_eq!(c.next(0, &T, false, NEVER), 5 * S);
        assert_eq!(c.due(5 * S, &T, false, true, NEVER), None, "subscribed by then");
        assert_eq!(c.next(5 * S, &T, false, NEVER), 20 * S, "and never again");
        let mut c = ConnTimers::new(0, &T, 5 * S);
        assert_eq!(c.due(5 * S, &T, false, false, NEVER), close(NO_SUBSCRIPTION));
    }

    #[test]
    fn token_expiry_wins_over_everything() {
        let mut c = ConnTimers::new(0, &T, 5 * S);
        assert_eq!(c.next(0, &T, false, 3 * S), 3 * S);
        assert_eq!(c.due(70 * S, &T, true, false, 3 * S), close(TOKEN_EXPIRED));
    }

    #[test]
    fn a_shorter_ping_period_applies_at_once() {
        let mut c = ConnTimers::new(0, &T, 0);
        let fast = Timeouts { ping_ns: S, ..T };
        assert_eq!(c.next(2 * S, &fast, false, NEVER), 3 * S);
    }
}
