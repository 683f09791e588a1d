//! Wall-clock helpers: milliseconds since the epoch, and RFC 3339 text.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 with milliseconds, UTC (`2026-11-28T05:24:57.123Z`).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
