//! Warnings that need the current time: cron windows that will never open (or never close)
//! from now on, e.g. `0 0 0 31 2 *` (31 February) or a year field in the past. Pure: `now` is
//! an argument (`check-config` passes the wall clock).

use super::Config;
use super::validate::Issue;
use crate::model::Timestamp;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// How far ahead a window's start must fire to count as "will open". Eight years is the longest
/// gap between two 29 Februaries (2096 → 2104, no leap day in 2100); ten leaves margin.
pub const CRON_HORIZON_YEARS: i64 = 10;

/// The first firing of `expr` in `tz` after `now`, if one falls within the horizon. `Err` when
/// the expression or zone does not parse (validation reports those).
fn next_fire(expr: &str, tz: &str, now: Timestamp) -> Result<Option<DateTime<Tz>>, ()> {
    let schedule = cron::Schedule::from_str(expr).map_err(|_| ())?;
    let tz: Tz = tz.trim().parse().map_err(|_| ())?;
    let utc = DateTime::<Utc>::from_timestamp_millis(now.millis()).ok_or(())?;
    let local = tz.from_utc_datetime(&utc.naive_utc());
    let limit = utc + chrono::Duration::days(CRON_HORIZON_YEARS * 366);
    // The cron crate stops iterating at its last representable year, so an impossible date
    // ends the iterator instead of looping.
    Ok(schedule
        .after(&local)
        .next()
        .filter(|t| t.with_timezone(&Utc) <= limit))
}

/// Cron windows of `cfg` whose start (or end) never fires within the horizon after `now`.
pub(super) fn cron_windows(cfg: &Config, now: Timestamp) -> Vec<Issue> {
    let mut out = Vec::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        for (j, s) in p.signals.iter().enumerate() {
            let Some(c) = &s.cron else { continue };
            let at = format!("pools[{i}].signals[{j}].cron");
            if let Ok(None) = next_fire(&c.start, &c.timezone, now) {
                out.push(Issue {
                    path: format!("{at}.start"),
                    message: format!(
                        "{:?} never fires in the next {CRON_HORIZON_YEARS} years, so the window \
                         never opens: check day-of-month against month (31 February, 31 April), \
                         and a year field in the past",
                        c.start
                    ),
                });
            } else if let Ok(None) = next_fire(&c.end, &c.timezone, now) {
                out.push(Issue {
                    path: format!("{at}.end"),
                    message: format!(
                        "{:?} never fires in the next {CRON_HORIZON_YEARS} years, so once open \
                         the window never closes and the pool keeps {} replicas",
                        c.end, c.desired
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-01-15 00:00 UTC.
    const NOW: Timestamp = Timestamp::from_secs(1_768_435_200);

    #[test]
    fn next_fire_finds_possible_dates_and_rejects_impossible_ones() {
        for (expr, opens) in [
            ("0 0 8 * * Mon-Fri", true),
            ("0 0 0 29 2 *", true),      // leap day: 2028
            ("0 0 0 31 2 *", false),     // 31 February
            ("0 0 0 31 4 *", false),     // 31 April
            ("0 0 8 * * * 2020", false), // a year in the past
            ("0 0 8 1 1 * 2031", true),
        ] {
            assert_eq!(
                next_fire(expr, "UTC", NOW).unwrap().is_some(),
                opens,
                "{expr}"
            );
        }
        assert!(next_fire("not cron", "UTC", NOW).is_err());
        assert!(next_fire("0 0 8 * * *", "Mars/Olympus", NOW).is_err());
    }
}
