use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time in milliseconds since the Unix epoch. The core never reads a clock: the
/// controller passes `now` in, from the system clock in production and from the virtual clock
/// in the simulator.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s * 1000)
    }
    pub fn from_secs_f64(s: f64) -> Self {
        Timestamp((s * 1000.0).round() as i64)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// Seconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1000.0
    }
    pub fn plus_secs(self, s: f64) -> Timestamp {
        Timestamp(self.0 + (s * 1000.0).round() as i64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:.3}s", self.secs_f64())
    }
}
