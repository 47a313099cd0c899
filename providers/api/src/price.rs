use crate::Money;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// The hourly price of one instance of an offering: a known figure, or an explicit unknown.
///
/// Unknown is not zero. A provider says `Unknown` when no source it trusts (the live price API,
/// the shipped regional table, the user's override) has a figure for the type in the group's
/// region, instead of borrowing another region's figure. The planner treats an unknown-priced
/// offering as the last choice: never the cheapest, never a consolidation target that "saves"
/// money, and never launched under a `max_cost_per_hour` cap it cannot show it keeps.
///
/// Ordering: every known price sorts before `Unknown`, known prices by amount, so sorting by
/// price puts unknown-priced offerings last.
///
/// Serialises as a number of dollars, or `null` when unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Price {
    Known(Money),
    Unknown,
}

impl Price {
    pub fn from_dollars(d: f64) -> Self {
        Price::Known(Money::from_dollars(d))
    }
    /// The figure, if known.
    pub fn known(self) -> Option<Money> {
        match self {
            Price::Known(m) => Some(m),
            Price::Unknown => None,
        }
    }
    pub fn is_unknown(self) -> bool {
        matches!(self, Price::Unknown)
    }
    /// Scale a known price (a discount, a risk multiplier); unknown stays unknown.
    pub fn scale(self, f: f64) -> Price {
        match self {
            Price::Known(m) => Price::Known(m.scale(f)),
            Price::Unknown => Price::Unknown,
        }
    }
    /// `self − other` when both are known.
    pub fn minus(self, other: Price) -> Option<Money> {
        Some(self.known()? - other.known()?)
    }
}

impl From<Money> for Price {
    fn from(m: Money) -> Self {
        Price::Known(m)
    }
}

impl From<Option<Money>> for Price {
    fn from(m: Option<Money>) -> Self {
        m.map_or(Price::Unknown, Price::Known)
    }
}

impl Ord for Price {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Price::Known(a), Price::Known(b)) => a.cmp(b),
            (Price::Known(_), Price::Unknown) => Ordering::Less,
            (Price::Unknown, Price::Known(_)) => Ordering::Greater,
            (Price::Unknown, Price::Unknown) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Price::Known(m) => m.fmt(f),
            Price::Unknown => f.write_str("unknown"),
        }
    }
}

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.known().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<Money>::deserialize(d)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_sorts_after_every_known_price() {
        let mut v = [
            Price::Unknown,
            Price::from_dollars(90.0),
            Price::from_dollars(0.5),
        ];
        v.sort();
        assert_eq!(
            v,
            [
                Price::from_dollars(0.5),
                Price::from_dollars(90.0),
                Price::Unknown
            ]
        );
    }

    #[test]
    fn serde_round_trip_keeps_unknown_apart_from_zero() {
        for (p, json) in [
            (Price::from_dollars(1.006), "1.006"),
            (Price::Known(Money::ZERO), "0.0"),
            (Price::Unknown, "null"),
        ] {
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
            assert_eq!(serde_json::from_str::<Price>(json).unwrap(), p);
        }
    }

    #[test]
    fn arithmetic_only_on_known_prices() {
        let a = Price::from_dollars(3.0);
        assert_eq!(
            a.minus(Price::from_dollars(1.0)),
            Some(Money::from_dollars(2.0))
        );
        assert_eq!(a.minus(Price::Unknown), None);
        assert_eq!(Price::Unknown.scale(0.5), Price::Unknown);
        assert_eq!(a.scale(0.5), Price::from_dollars(1.5));
        assert_eq!(Price::Unknown.to_string(), "unknown");
    }
}
