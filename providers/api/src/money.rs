use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub};

/// Hours in the month disks are priced per: EBS and Persistent Disk are both billed per
/// GB-month, and both clouds' pricing examples divide by a 730-hour month (Amazon EBS pricing
/// page; "a 30-day billing cycle (730 hours)" on cloud.google.com). The Terraform modules'
/// standing-cost outputs divide by the same, so provider, simulator and module agree.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// EBS gp3 as the Amazon EBS pricing page states it for US East (N. Virginia), the one price
/// list the AWS provider's fallback table (`gpupool_aws::ebs::table_rate`) and the simulator's
/// warm cache disk (`sim::timing`) both read: "All gp3 volumes include a free baseline
/// performance of 3,000 provisioned IOPS … and 125 provisioned MB/s throughput"; storage per
/// GB-month, provisioned IOPS and throughput above that baseline per IOPS- and MiB/s-month.
pub mod gp3 {
    pub const FREE_IOPS: u32 = 3_000;
    pub const FREE_MIBPS: u32 = 125;
    pub const US_EAST_1_PER_GB_MONTH: f64 = 0.08;
    pub const US_EAST_1_PER_IOPS_MONTH: f64 = 0.005;
    pub const US_EAST_1_PER_MIBPS_MONTH: f64 = 0.04;
}

/// An amount of US dollars in integer micro-dollars: exact sums, no float drift in budgets.
/// Serialises as a number of dollars (`12.5`) so snapshots and configs stay readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }
    pub fn from_dollars(d: f64) -> Self {
        Money((d * 1_000_000.0).round() as i64)
    }
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    /// Scale by a real factor (hours, a risk multiplier), rounding to the micro-dollar.
    pub fn scale(self, f: f64) -> Money {
        Money((self.0 as f64 * f).round() as i64)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0.saturating_add(o.0))
    }
}
impl AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        self.0 = self.0.saturating_add(o.0);
    }
}
impl Sub for Money {
    type Output = Money;
    fn sub(self, o: Money) -> Money {
        Money(self.0.saturating_sub(o.0))
    }
}
impl Mul<u32> for Money {
    type Output = Money;
    fn mul(self, n: u32) -> Money {
        Money(self.0.saturating_mul(i64::from(n)))
    }
}
impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.4}", self.dollars())
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() {
            return Err(serde::de::Error::custom(
                "money must be a finite number of dollars",
            ));
        }
        Ok(Money::from_dollars(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_trip_exactly() {
        let m = Money::from_dollars(98.32);
        assert_eq!(m.micros(), 98_320_000);
        assert_eq!(serde_json::to_string(&m).unwrap(), "98.32");
        let back: Money = serde_json::from_str("98.32").unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Money(i64::MAX) + Money(1), Money(i64::MAX));
        assert_eq!(Money::from_dollars(1.5) * 4, Money::from_dollars(6.0));
        assert_eq!(
            Money::from_dollars(10.0).scale(0.25),
            Money::from_dollars(2.5)
        );
    }
}
