//! Cron windows: parsed once when the config loads, so the type lives in the pure core
//! (`config::cron`); re-exported here, beside the other signal kinds.

pub use crate::config::cron::{CronError, CronWindow, parse_cron, parse_tz};
