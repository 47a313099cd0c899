//! Cron windows (KEDA's cron scaler): between a `start` and an `end` cron expression, in an
//! IANA time zone, the signal asks for `desired` replicas. Parsed once, when the config is
//! loaded ([`CronWindow::new`]); the validated config keeps the parsed schedules and zone, so
//! nothing parses a cron expression again at run time.
//!
//! The window is open at `now` when the most recent `start` firing (at or before `now`) is
//! later than the most recent `end` firing. Evaluating "most recent firing" rather than
//! "between today's start and end" makes windows that span midnight or weekends
//! (`start: 0 0 22 * * Fri`, `end: 0 0 6 * * Mon`) work without special cases. Time-zone
//! arithmetic (daylight saving shifts) is done by `chrono-tz` on the local wall clock.

use crate::model::Timestamp;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use cron::Schedule;
use std::str::FromStr;

/// Why a cron expression or time zone does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("invalid cron expression {expr:?}: {message}")]
    Expression { expr: String, message: String },
    #[error("unknown time zone {0:?}: use an IANA name such as UTC or Europe/Paris")]
    TimeZone(String),
}

/// A parsed cron window: two schedules and the zone they are read in, with the text they were
/// parsed from (for messages).
#[derive(Clone, Debug)]
pub struct CronWindow {
    start: Schedule,
    end: Schedule,
    tz: Tz,
    start_text: String,
    end_text: String,
}

impl PartialEq for CronWindow {
    /// Two windows are equal when they were parsed from the same text in the same zone.
    fn eq(&self, other: &Self) -> bool {
        self.start_text == other.start_text
            && self.end_text == other.end_text
            && self.tz == other.tz
    }
}

/// Parse a 6- or 7-field cron expression (seconds first, optional year last).
pub fn parse_cron(expr: &str) -> Result<Schedule, CronError> {
    Schedule::from_str(expr).map_err(|e| CronError::Expression {
        expr: expr.to_owned(),
        message: e.to_string(),
    })
}

/// Parse an IANA time-zone name (`UTC`, `Europe/Paris`); surrounding blanks are ignored.
pub fn parse_tz(name: &str) -> Result<Tz, CronError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| CronError::TimeZone(name.to_owned()))
}

impl CronWindow {
    pub fn new(start: &str, end: &str, timezone: &str) -> Result<Self, CronError> {
        Ok(CronWindow {
            start: parse_cron(start)?,
            end: parse_cron(end)?,
            tz: parse_tz(timezone)?,
            start_text: start.to_owned(),
            end_text: end.to_owned(),
        })
    }

    /// A window from schedules already parsed (validation parses each expression once, with
    /// its own messages).
    pub(super) fn from_parsed(
        start: Schedule,
        end: Schedule,
        tz: Tz,
        start_text: &str,
        end_text: &str,
    ) -> Self {
        CronWindow {
            start,
            end,
            tz,
            start_text: start_text.to_owned(),
            end_text: end_text.to_owned(),
        }
    }

    /// The `start` expression as written.
    pub fn start_text(&self) -> &str {
        &self.start_text
    }

    /// The `end` expression as written.
    pub fn end_text(&self) -> &str {
        &self.end_text
    }

    /// The zone both expressions are read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    pub fn start(&self) -> &Schedule {
        &self.start
    }

    pub fn end(&self) -> &Schedule {
        &self.end
    }

    /// Whether the window is open at `now`.
    pub fn contains(&self, now: Timestamp) -> bool {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(now.millis()) else {
            return false;
        };
        let local = self.tz.from_utc_datetime(&utc.naive_utc());
        match (
            last_at_or_before(&self.start, &local),
            last_at_or_before(&self.end, &local),
        ) {
            (Some(s), Some(e)) => s > e,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// The latest firing of `schedule` at or before `t`.
fn last_at_or_before(schedule: &Schedule, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    // Cron fires on whole seconds; `after(t)` iterated backwards yields firings before `t`.
    if schedule.includes(*t) {
        return Some(*t);
    }
    schedule.after(t).next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        let t = tz.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap();
        Timestamp::from_millis(t.timestamp_millis())
    }

    #[test]
    fn business_hours_window() {
        let w = CronWindow::new("0 0 8 * * Mon-Fri", "0 0 18 * * Mon-Fri", "Europe/Paris").unwrap();
        let p = chrono_tz::Europe::Paris;
        // 2025-03-05 is a Wednesday.
        assert!(!w.contains(at(p, 2025, 3, 5, 7, 59)));
        assert!(w.contains(at(p, 2025, 3, 5, 8, 0)), "start is inclusive");
        assert!(w.contains(at(p, 2025, 3, 5, 12, 0)));
        assert!(!w.contains(at(p, 2025, 3, 5, 18, 0)), "end is exclusive");
        // Saturday: closed all day.
        assert!(!w.contains(at(p, 2025, 3, 8, 12, 0)));
        // The same instant seen from UTC: 08:30 Paris is 07:30 UTC in winter.
        let u = CronWindow::new("0 0 8 * * Mon-Fri", "0 0 18 * * Mon-Fri", "UTC").unwrap();
        assert!(!u.contains(at(p, 2025, 3, 5, 8, 30)));
    }

    #[test]
    fn window_across_the_weekend_and_daylight_saving() {
        let w = CronWindow::new("0 0 22 * * Fri", "0 0 6 * * Mon", "America/New_York").unwrap();
        let ny = chrono_tz::America::New_York;
        // DST starts Sunday 2025-03-09 in New York.
        assert!(w.contains(at(ny, 2025, 3, 8, 3, 0)));
        assert!(w.contains(at(ny, 2025, 3, 9, 12, 0)));
        assert!(w.contains(at(ny, 2025, 3, 10, 5, 59)));
        assert!(!w.contains(at(ny, 2025, 3, 10, 6, 0)));
        assert!(!w.contains(at(ny, 2025, 3, 7, 21, 0)));
    }

    #[test]
    fn bad_expressions_and_zones_are_errors() {
        assert!(
            matches!(parse_cron("0 8 * * *"), Err(CronError::Expression { .. })),
            "5 fields"
        );
        assert!(matches!(
            parse_cron("0 0 25 * * *"),
            Err(CronError::Expression { .. })
        ));
        assert!(
            parse_cron("0 0 8 * * Mon-Fri 2030").is_ok(),
            "optional year"
        );
        assert!(matches!(
            parse_tz("Mars/Olympus"),
            Err(CronError::TimeZone(_))
        ));
        assert!(
            parse_tz(" UTC ").is_ok(),
            "blanks around the zone are ignored"
        );
    }

    #[test]
    fn windows_compare_by_their_text_and_zone() {
        let a = CronWindow::new("0 0 8 * * *", "0 0 18 * * *", "UTC").unwrap();
        assert_eq!(a, a.clone());
        assert_ne!(
            a,
            CronWindow::new("0 0 8 * * *", "0 0 18 * * *", "Europe/Paris").unwrap()
        );
        assert_eq!(a.start_text(), "0 0 8 * * *");
    }
}
