//! Validated quantities of the typed config: a [`Share`] is a fraction in 0..=1 (a spot share,
//! a discount). Prices and caps are [`crate::model::Money`] (integer micro-dollars).

use std::fmt;

/// A fraction in 0..=1, finite: only [`Share::new`] makes one, so every holder can multiply by
/// it without checking.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Share(f64);

impl Share {
    pub const ZERO: Share = Share(0.0);
    pub const ONE: Share = Share(1.0);

    /// `v` as a share, when it is a finite number in 0..=1.
    pub fn new(v: f64) -> Option<Share> {
        (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(Share(v))
    }

    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }

    /// What is left: `1 − share`.
    pub fn complement(self) -> Share {
        Share(1.0 - self.0)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finite_fractions_are_shares() {
        for (v, ok) in [
            (0.0, true),
            (0.28, true),
            (1.0, true),
            (-0.1, false),
            (1.5, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
        ] {
            assert_eq!(Share::new(v).is_some(), ok, "{v}");
        }
        assert_eq!(Share::new(0.25).unwrap().complement().get(), 0.75);
        assert_eq!(Share::ONE.complement(), Share::ZERO);
    }
}

/// Serde for a [`std::time::Duration`] written as whole seconds (`timeout_s: 5`): the YAML keeps
/// its `_s` keys and whole numbers (and serde's "expected u64" message for anything else), the
/// program holds a `Duration`.
pub(crate) mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// [`secs`] for an optional key (`unneeded_time_s`, unset: `None`).
pub(crate) mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|v| v.map(Duration::from_secs))
    }
}
