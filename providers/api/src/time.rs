use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time in milliseconds since the Unix epoch. The core never reads a clock: the
/// controller passes `now` in, from the system clock in production and from the virtual clock
/// in the simulator.
///
/// Times that come from outside (cloud events, metric samples, snapshot files) enter through
/// the checked constructors ([`Timestamp::try_from_secs_f64`], [`Timestamp::try_from_millis`]),
/// which accept only [`Timestamp::MIN_EXTERNAL`]..=[`Timestamp::MAX_EXTERNAL`]. Arithmetic
/// saturates, so even a value that skipped the check can never panic or wrap.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Why an external time was refused.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum TimestampError {
    #[error("time {0} is not a finite number")]
    NotFinite(f64),
    #[error(
        "time {secs} s since the epoch is outside the accepted range 0..=253402300799 (1970..=9999)"
    )]
    OutOfRange { secs: f64 },
}

impl Timestamp {
    /// The earliest time accepted from outside: the Unix epoch. Nothing gpupool reads (cloud
    /// events, metric samples, snapshots) can predate it.
    pub const MIN_EXTERNAL: Timestamp = Timestamp(0);
    /// The latest time accepted from outside: 9999-12-31T23:59:59Z, the end of RFC 3339's
    /// four-digit years. Far enough that any real time fits, near enough that adding any
    /// duration gpupool uses stays far from `i64` overflow.
    pub const MAX_EXTERNAL: Timestamp = Timestamp(253_402_300_799_000);

    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }
    /// Trusted input only (the clock, configuration already validated): saturates at the `i64`
    /// range. External times go through [`Timestamp::try_from_secs_f64`].
    pub fn from_secs_f64(s: f64) -> Self {
        // `as` saturates (and maps NaN to 0) since Rust 1.45: never UB, never a panic.
        Timestamp((s * 1000.0).round() as i64)
    }
    /// An external time in (fractional) epoch seconds, checked: finite and within
    /// [`Timestamp::MIN_EXTERNAL`]..=[`Timestamp::MAX_EXTERNAL`].
    pub fn try_from_secs_f64(s: f64) -> Result<Self, TimestampError> {
        if !s.is_finite() {
            return Err(TimestampError::NotFinite(s));
        }
        let ms = (s * 1000.0).round();
        if ms < Self::MIN_EXTERNAL.0 as f64 || ms > Self::MAX_EXTERNAL.0 as f64 {
            return Err(TimestampError::OutOfRange { secs: s });
        }
        Ok(Timestamp(ms as i64))
    }
    /// An external time in epoch milliseconds, checked like [`Timestamp::try_from_secs_f64`].
    pub fn try_from_millis(ms: i64) -> Result<Self, TimestampError> {
        let t = Timestamp(ms);
        if t.is_external_range() {
            Ok(t)
        } else {
            Err(TimestampError::OutOfRange {
                secs: ms as f64 / 1000.0,
            })
        }
    }
    /// Within the range accepted from outside (for values that were deserialized directly).
    pub fn is_external_range(self) -> bool {
        (Self::MIN_EXTERNAL..=Self::MAX_EXTERNAL).contains(&self)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub fn secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// Seconds from `earlier` to `self` (negative if `earlier` is later). Saturating: never
    /// overflows, whatever the two values.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / 1000.0
    }
    /// `self` plus `s` seconds, saturating at the `i64` range (a NaN adds nothing).
    pub fn plus_secs(self, s: f64) -> Timestamp {
        Timestamp(self.0.saturating_add((s * 1000.0).round() as i64))
    }
    /// `self` plus `s` seconds, `None` when the result leaves the external range or `s` is
    /// not finite: for deadlines derived from external times.
    pub fn checked_plus_secs(self, s: f64) -> Option<Timestamp> {
        if !s.is_finite() {
            return None;
        }
        let t = self.plus_secs(s);
        t.is_external_range().then_some(t)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:.3}s", self.secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_times_are_checked() {
        assert_eq!(
            Timestamp::try_from_secs_f64(1_613_651_696.5),
            Ok(Timestamp(1_613_651_696_500))
        );
        assert_eq!(Timestamp::try_from_secs_f64(0.0), Ok(Timestamp(0)));
        for bad in [1e300, -1e300, -1.0, 253_402_300_800.0, 1e19] {
            assert!(
                matches!(
                    Timestamp::try_from_secs_f64(bad),
                    Err(TimestampError::OutOfRange { .. })
                ),
                "{bad}"
            );
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                Timestamp::try_from_secs_f64(bad),
                Err(TimestampError::NotFinite(_))
            ));
        }
        assert!(Timestamp::try_from_millis(i64::MAX).is_err());
        assert!(Timestamp::try_from_millis(i64::MIN).is_err());
        assert!(Timestamp::try_from_millis(1_700_000_000_000).is_ok());
        assert_eq!(
            Timestamp(1000).checked_plus_secs(120.0),
            Some(Timestamp(121_000))
        );
        assert_eq!(Timestamp::MAX_EXTERNAL.checked_plus_secs(1.0), None);
        assert_eq!(Timestamp(0).checked_plus_secs(f64::NAN), None);
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let huge = Timestamp::from_secs_f64(1e300);
        assert_eq!(huge, Timestamp(i64::MAX));
        assert_eq!(huge.plus_secs(120.0), Timestamp(i64::MAX));
        assert_eq!(
            Timestamp::from_secs_f64(-1e300).plus_secs(-1.0),
            Timestamp(i64::MIN)
        );
        assert!(Timestamp(i64::MIN).secs_since(Timestamp(i64::MAX)) < 0.0);
        assert!(Timestamp(i64::MAX).secs_since(Timestamp(i64::MIN)) > 0.0);
        assert_eq!(Timestamp::from_secs(i64::MAX), Timestamp(i64::MAX));
        assert_eq!(Timestamp(5).plus_secs(f64::NAN), Timestamp(5));
    }
}
