//! The timer values of RFC 3261 §17 (table 4 of appendix A) and RFC 6026.
//!
//! Everything derives from T1, T2 and T4. Durations that RFC 3261 sets to zero on
//! reliable transports take the `reliable` flag.

use std::time::{Duration, Instant};

/// Timer D on unreliable transports: "at least 32 seconds" (§17.1.1.2).
const TIMER_D_MIN: Duration = Duration::from_secs(32);

/// T1 (round-trip estimate), T2 (largest non-INVITE retransmission interval) and T4
/// (how long the network keeps a message). The server config's
/// `sip.timers.t1_ms/t2_ms/t4_ms` give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    /// The RFC 3261 values: T1 500 ms, T2 4 s, T4 5 s.
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    pub fn from_millis(t1: u64, t2: u64, t4: u64) -> Self {
        Self {
            t1: Duration::from_millis(t1),
            t2: Duration::from_millis(t2),
            t4: Duration::from_millis(t4),
        }
    }

    fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer A: the first INVITE retransmission interval (T1, doubling without cap).
    pub fn a(&self) -> Duration {
        self.t1
    }

    /// Timer B: INVITE transaction timeout (64·T1).
    pub fn b(&self) -> Duration {
        self.t1x64()
    }

    /// Timer D: how long a client INVITE transaction absorbs retransmitted final
    /// responses. At least 32 s, and never shorter than the server's Timer H (64·T1)
    /// that drives those retransmissions; 0 on reliable transports.
    pub fn d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            TIMER_D_MIN.max(self.t1x64())
        }
    }

    /// Timer E: the first non-INVITE retransmission interval (T1, doubling up to T2).
    pub fn e(&self) -> Duration {
        self.t1
    }

    /// Timer F: non-INVITE transaction timeout (64·T1).
    pub fn f(&self) -> Duration {
        self.t1x64()
    }

    /// Timer G: the first retransmission interval of an INVITE server's non-2xx final
    /// response (T1, doubling up to T2).
    pub fn g(&self) -> Duration {
        self.t1
    }

    /// Timer H: how long an INVITE server waits for the ACK (64·T1).
    pub fn h(&self) -> Duration {
        self.t1x64()
    }

    /// Timer I: how long the Confirmed state absorbs ACK retransmissions (T4; 0 reliable).
    pub fn i(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: how long a non-INVITE server absorbs request retransmissions
    /// (64·T1; 0 reliable).
    pub fn j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// Timer K: how long a non-INVITE client absorbs response retransmissions
    /// (T4; 0 reliable).
    pub fn k(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer L (RFC 6026): how long an INVITE server stays Accepted after a 2xx,
    /// absorbing INVITE retransmissions (64·T1, any transport).
    pub fn l(&self) -> Duration {
        self.t1x64()
    }

    /// Timer M (RFC 6026): how long an INVITE client stays Accepted after a 2xx,
    /// passing further 2xx (retransmissions, other forks) up (64·T1, any transport).
    pub fn m(&self) -> Duration {
        self.t1x64()
    }

    /// The next retransmission interval after `current` for timers E and G: double,
    /// capped at T2 (Timer A is doubled without a cap).
    pub fn next_capped(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

/// `now + d`, or `None` ("never") when that is beyond what `Instant` can hold, so an
/// absurd configured timer cannot panic.
pub(crate) fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_values() {
        let t = Timers::default();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!((t.a(), t.e(), t.g()), (ms(500), ms(500), ms(500)));
        assert_eq!((t.b(), t.f(), t.h()), (s(32), s(32), s(32)));
        assert_eq!((t.d(false), t.d(true)), (s(32), Duration::ZERO));
        assert_eq!((t.i(false), t.i(true)), (s(5), Duration::ZERO));
        assert_eq!((t.j(false), t.j(true)), (s(32), Duration::ZERO));
        assert_eq!((t.k(false), t.k(true)), (s(5), Duration::ZERO));
        assert_eq!((t.l(), t.m()), (s(32), s(32)));
        assert_eq!(t.next_capped(ms(500)), s(1));
        assert_eq!(t.next_capped(s(2)), s(4));
        assert_eq!(t.next_capped(s(4)), s(4));
        // A larger T1 stretches D with Timer H.
        let slow = Timers::from_millis(1000, 4000, 5000);
        assert_eq!(slow.d(false), s(64));
    }

    #[test]
    fn absurd_values_do_not_panic() {
        let t = Timers {
            t1: Duration::MAX,
            t2: Duration::MAX,
            t4: Duration::MAX,
        };
        assert_eq!(t.b(), Duration::MAX);
        assert_eq!(t.next_capped(Duration::MAX), Duration::MAX);
        assert_eq!(after(Instant::now(), t.b()), None);
    }
}
