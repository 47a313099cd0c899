//! The one place gpupool reads a clock.
//!
//! The planner never reads time: the controller passes `now` in — from here in production, from
//! the simulator's virtual clock in simulations. Shell code that needs the real time (the tick
//! loop, HTTP probes, cache ages in the providers, latency measurements) calls these functions;
//! `clippy.toml` disallows `SystemTime::now`, `Instant::now` and `Utc::now` everywhere else, so
//! a new clock read cannot slip into code that a simulation or a replayed snapshot must
//! reproduce. (Tests that poll real services with wall-clock deadlines allow it explicitly.)

use crate::Timestamp;

/// Wall-clock time as a [`Timestamp`] (milliseconds since the Unix epoch; 0 before it).
#[allow(clippy::disallowed_methods)]
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_millis(ms)
}

/// A monotonic instant, for durations and cache ages (never a decision input of the planner).
#[allow(clippy::disallowed_methods)]
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}

/// tokio's monotonic instant, for deadlines of async waits.
#[allow(clippy::disallowed_methods)]
pub fn monotonic_tokio() -> tokio::time::Instant {
    tokio::time::Instant::now()
}
