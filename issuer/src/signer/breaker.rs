//! A circuit breaker for a remote signer: after a run of failures, callers
//! are refused at once (503 + `Retry-After`) instead of each waiting for a
//! timeout, and one probe at a time finds out when the service is back.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When the circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive failed calls that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe call may go through.
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Calls go through; `failures` counts the current run of failures.
    Closed { failures: u32 },
    /// Calls are refused until `until`.
    Open { until: Instant },
    /// One probe call is in flight; everybody else waits for its outcome.
    Probing,
}

/// The breaker. Cheap: one uncontended mutex per call.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Refused without a call: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub retry_after: Duration,
}

/// A call the breaker let through. Report its outcome with
/// [`Admitted::succeeded`] or [`Admitted::failed`]; dropping it unreported
/// (the caller gave up, e.g. on a timeout) counts as a failure.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self { settings, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state invalid:
        // every write is a single assignment.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets a call through, or refuses it while the circuit is open.
    pub(crate) fn admit(&self) -> Result<Admitted<'_>, Refused> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Admitted { breaker: self, probe: false, reported: false }),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(Refused { retry_after: until - now })
                } else {
                    *state = State::Probing;
                    Ok(Admitted { breaker: self, probe: true, reported: false })
                }
            }
            // The probe's answer is due within one call timeout; a second
            // is the honest hint.
            State::Probing => Err(Refused { retry_after: Duration::from_secs(1) }),
        }
    }

    /// Whether calls currently go through (readiness), without admitting one.
    pub(crate) fn check(&self) -> Result<(), Refused> {
        match *self.lock() {
            State::Closed { .. } => Ok(()),
            State::Open { until } => Err(Refused { retry_after: until.saturating_duration_since(Instant::now()) }),
            State::Probing => Err(Refused { retry_after: Duration::from_secs(1) }),
        }
    }

    /// Whether the circuit is open with its cooldown over (a probe is due).
    pub(crate) fn probe_due(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() >= until)
    }

    fn record(&self, probe: bool, ok: bool) {
        let mut state = self.lock();
        *state = match (ok, *state) {
            (true, _) => State::Closed { failures: 0 },
            (false, State::Closed { failures }) if !probe && failures + 1 < self.settings.failures => {
                State::Closed { failures: failures + 1 }
            }
            (false, _) => State::Open { until: Instant::now() + self.settings.cooldown },
        };
    }
}

impl Admitted<'_> {
    /// The call worked.
    pub(crate) fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, true);
    }

    /// The service answered a call that does not sign (e.g. reading the
    /// public key): close, but so that one more failure reopens.
    pub(crate) fn answered_without_signing(mut self) {
        self.reported = true;
        let mut state = self.breaker.lock();
        *state = State::Closed { failures: self.breaker.settings.failures.saturating_sub(1) };
    }

    /// The call failed (unavailable or refused by the service).
    pub(crate) fn failed(mut self) {
        self.reported = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.record(self.probe, false);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn breaker(cooldown_ms: u64) -> Breaker {
        Breaker::new(BreakerSettings { failures: 3, cooldown: Duration::from_millis(cooldown_ms) })
    }

    #[test]
    fn opens_after_the_threshold_and_refuses_fast() {
        let b = breaker(60_000);
        b.admit().unwrap().failed();
        b.admit().unwrap().failed();
        b.admit().unwrap().succeeded(); // a success resets the run
        b.admit().unwrap().failed();
        b.admit().unwrap().failed();
        assert!(b.check().is_ok());
        b.admit().unwrap().failed();
        let refused = b.admit().unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(59));
        assert!(b.check().is_err());
        assert!(!b.probe_due());
    }

    #[test]
    fn one_probe_after_the_cooldown_then_closes_or_reopens() {
        let b = breaker(20);
        for _ in 0..3 {
            b.admit().unwrap().failed();
        }
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.probe_due());
        let probe = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err().retry_after, Duration::from_secs(1), "only one probe at a time");
        probe.failed();
        assert!(b.admit().is_err(), "a failed probe reopens at once");
        std::thread::sleep(Duration::from_millis(30));
        b.admit().unwrap().succeeded();
        assert!(b.check().is_ok());
        b.admit().unwrap().failed();
        assert!(b.check().is_ok(), "closed again with a fresh count");
    }

    #[test]
    fn an_abandoned_call_counts_as_a_failure() {
        let b = breaker(60_000);
        for _ in 0..3 {
            drop(b.admit().unwrap());
        }
        assert!(b.admit().is_err());
    }

    #[test]
    fn an_answer_without_signing_closes_on_probation() {
        let b = breaker(0);
        for _ in 0..3 {
            b.admit().unwrap().failed();
        }
        b.admit().unwrap().answered_without_signing();
        assert!(b.check().is_ok());
        b.admit().unwrap().failed();
        assert!(b.check().is_err());
    }
}
