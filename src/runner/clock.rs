//! The scheduler's notion of "now", replaceable so tests move time instead of waiting.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// Where the current time comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// The RFC 3339 time written in a file, read at every look (a testing aid: several
    /// server processes can share one file). The system clock is used while the file is
    /// missing or unreadable.
    File(PathBuf),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}
