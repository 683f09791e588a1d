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

/// RFC 3339 UTC with exactly three fractional digits
/// (`2026-11-28T05:24:57.000Z`): fixed width, so stamps compare as text in
/// time order (the version of an edited message is one).
pub fn stamp(ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn parse_ms(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_fixed_width_and_round_trip() {
        for ms in [0, 1, 999, 1_000, 1_764_900_000_000, 1_764_900_000_123] {
            let s = stamp(ms);
            assert_eq!(s.len(), 24, "{s}");
            assert_eq!(parse_ms(&s), Some(ms));
        }
        assert!(stamp(1_764_900_000_000) < stamp(1_764_900_000_001));
        assert_eq!(parse_ms("not a time"), None);
    }
}
