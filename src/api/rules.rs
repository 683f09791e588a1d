//! The rules for what people type — sign-up and profile fields, message
//! text — in one place, compiled
//! into both builds: the server enforces them (`server::auth`), the wasm
//! client runs the very same checks before a round trip (`app::validate`).
//!
//! Each check takes the value as typed and answers `None` when it is fine,
//! else the message to show under the field. Values are checked as the
//! server stores them: trimmed (names, bio) or normalised (email).

use crate::{api::dto::MAX_GROUP_NAME_CHARS, protocol::MAX_TEXT_CHARS};

/// Password minimum, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Password maximum, in bytes (the hash input is bounded, whatever the script).
pub const PASSWORD_MAX_BYTES: usize = 128;
/// Full name maximum, in characters, after trimming.
pub const FULL_NAME_MAX_CHARS: usize = 50;
/// Bio maximum, in characters, after trimming.
pub const BIO_MAX_CHARS: usize = 500;
/// Email maximum, in bytes, after normalising.
pub const EMAIL_MAX_BYTES: usize = 254;

/// The form an email is stored and looked up in: trimmed, lower case.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// `local@domain.tld`: one `@`, a non-empty local part, a dotted domain,
/// no whitespace or control characters, at most [`EMAIL_MAX_BYTES`].
///
/// Checks `value` trimmed, not lower-cased: the server passes the
/// normalised address it stores (so its check is on exactly that), the
/// client what was typed. Lower-casing changes none of these checks except,
/// for a few non-ASCII letters, the byte length; and leaving it out keeps
/// Unicode's case tables out of the wasm client (BENCHMARKS.md).
pub fn email(value: &str) -> Option<String> {
    let email = value.trim();
    let valid = email.len() <= EMAIL_MAX_BYTES
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if email.is_empty() {
        Some("Email is required".into())
    } else if !valid {
        Some("Enter a valid email address".into())
    } else {
        None
    }
}

/// At least [`PASSWORD_MIN_CHARS`] characters, at most
/// [`PASSWORD_MAX_BYTES`] bytes. Not trimmed: spaces count.
pub fn password(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("Password is required".into())
    } else if value.chars().count() < PASSWORD_MIN_CHARS {
        Some(format!("Password must be at least {PASSWORD_MIN_CHARS} characters"))
    } else if value.len() > PASSWORD_MAX_BYTES {
        Some(format!("Password must be at most {PASSWORD_MAX_BYTES} bytes"))
    } else {
        None
    }
}

/// Characters that make a name display as something it is not: bidi
/// embeddings, overrides and isolates (U+202A–202E, U+2066–2069, the
/// LRM/RLM/ALM marks), zero-width characters and joiners, word joiner and
/// invisible operators (U+200B–200D, U+2060–2064), and the BOM (U+FEFF).
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// 1 to [`FULL_NAME_MAX_CHARS`] characters after trimming, no control,
/// bidi-override, zero-width or BOM characters.
pub fn full_name(value: &str) -> Option<String> {
    let name = value.trim();
    let chars = name.chars().count();
    if chars == 0 {
        Some("Full name is required".into())
    } else if chars > FULL_NAME_MAX_CHARS {
        Some(format!("Full name must be at most {FULL_NAME_MAX_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Some("Full name cannot contain control characters".into())
    } else if name.chars().any(is_deceptive) {
        Some("Full name cannot contain invisible or text-direction characters".into())
    } else {
        None
    }
}

/// A group's name: 1 to [`MAX_GROUP_NAME_CHARS`] characters after
/// trimming, one line (no control characters); it is shown in lists and
/// titles.
pub fn group_name(value: &str) -> Option<String> {
    let name = value.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_GROUP_NAME_CHARS {
        Some(format!("A group name has 1 to {MAX_GROUP_NAME_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Some("A group name is one line of text".into())
    } else {
        None
    }
}

/// Control characters other than tab, line feed and carriage return. They
/// never belong in text people write, and U+0000 is refused outright by some
/// MongoDB-compatible stores (FerretDB on PostgreSQL): accepted, it would
/// become a message the worker cannot store or a profile update that fails.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Optional; at most [`BIO_MAX_CHARS`] characters after trimming, no
/// control characters but line breaks and tabs.
pub fn bio(value: &str) -> Option<String> {
    if value.trim().chars().count() > BIO_MAX_CHARS {
        Some(format!("Bio must be at most {BIO_MAX_CHARS} characters"))
    } else if value.chars().any(is_hidden_control) {
        Some("Bio cannot contain control characters".into())
    } else {
        None
    }
}

/// A message's text (empty is allowed here: an image alone is a message):
/// at most [`MAX_TEXT_CHARS`] characters, no control characters but line
/// breaks and tabs.
pub fn message_text(text: &str) -> Option<String> {
    if text.chars().count() > MAX_TEXT_CHARS {
        Some(format!("Messages are limited to {MAX_TEXT_CHARS} characters"))
    } else if text.chars().any(is_hidden_control) {
        Some("Messages cannot contain control characters".into())
    } else {
        None
    }
}

/// A client-chosen message id: 1 to [`MAX_CLIENT_MSG_ID_BYTES`] bytes, no
/// control characters (it is stored with the message).
pub fn client_msg_id(id: &str) -> Option<String> {
    (id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_BYTES || id.chars().any(char::is_control))
        .then(|| format!("Must be 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes, without control characters"))
}

/// Longest `client_msg_id`, in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        assert_eq!(normalise_email("  Ada@Example.COM "), "ada@example.com");
        assert!(email("ada@example.com").is_none());
        assert!(email("  ada@example.com ").is_none());
        assert!(email("  Ada@Example.COM ").is_none());
        let bad =
            ["", "ada", "ada@", "@x.com", "@example.com", "ada.example.com", "a@b", "a b@c.com", "a@@b.com", "a@.com"];
        for bad in bad {
            assert!(email(bad).is_some(), "{bad}");
        }
        assert_eq!(email("  ").as_deref(), Some("Email is required"));
        assert!(email(&format!("{}@example.com", "a".repeat(EMAIL_MAX_BYTES))).is_some());
    }

    #[test]
    fn password_counts_characters_for_the_minimum_and_bytes_for_the_maximum() {
        assert!(password("").is_some());
        assert!(password("1234567").is_some());
        assert!(password("12345678").is_none());
        assert!(password(&"x".repeat(128)).is_none());
        assert!(password(&"x".repeat(129)).is_some_and(|m| m.contains("128")));
        // 4 characters but 8 bytes: too short.
        assert!(password("éééé").is_some());
        // 8 characters but 32 bytes: fine; 43 four-byte chars = 172 bytes: too long.
        assert!(password("🦀🦀🦀🦀🦀🦀🦀🦀").is_none());
        assert!(password(&"🦀".repeat(43)).is_some());
    }

    #[test]
    fn group_names_are_one_trimmed_line_of_bounded_length() {
        assert!(group_name("  Launch crew ").is_none());
        assert!(group_name("   ").is_some());
        assert!(group_name(&"é".repeat(MAX_GROUP_NAME_CHARS)).is_none());
        assert!(group_name(&"é".repeat(MAX_GROUP_NAME_CHARS + 1)).is_some());
        assert!(group_name("two\nlines").is_some_and(|m| m.contains("one line")));
    }

    #[test]
    fn text_rules_refuse_hidden_control_characters_but_keep_line_breaks() {
        assert!(message_text("two\nlines\twith a tab\r\n").is_none());
        assert!(message_text("").is_none());
        assert!(message_text("nul \u{0}").is_some_and(|m| m.contains("control")));
        assert!(message_text("escape \u{1b}[31m").is_some());
        assert!(message_text("c1 \u{85}").is_some());
        assert!(message_text(&"x".repeat(MAX_TEXT_CHARS)).is_none());
        assert!(message_text(&"x".repeat(MAX_TEXT_CHARS + 1)).is_some_and(|m| m.contains("limited")));
        assert!(bio("line\nbreak").is_none());
        assert!(bio("nul\u{0}").is_some());
        assert!(client_msg_id("c-1").is_none());
        assert!(client_msg_id("").is_some());
        assert!(client_msg_id("a\u{0}").is_some());
        assert!(client_msg_id(&"x".repeat(MAX_CLIENT_MSG_ID_BYTES + 1)).is_some());
    }

    #[test]
    fn full_name_is_bounded_in_characters() {
        assert!(full_name("Ada").is_none());
        assert!(full_name("   ").is_some());
        assert!(full_name(&"é".repeat(50)).is_none());
        assert!(full_name(&format!("  {}  ", "é".repeat(50))).is_none());
        assert!(full_name(&"é".repeat(51)).is_some());
        assert!(full_name("Ada\u{7}Lovelace").is_some());
        for sneaky in ["Ada\u{202E}ecalevoL", "Ad\u{200B}a", "\u{FEFF}Ada", "Ada\u{2066}x\u{2069}", "A\u{200D}da"] {
            assert!(full_name(sneaky).is_some(), "{sneaky:?} is refused");
        }
        assert!(full_name("Zoë Ångström 李小龙 محمد").is_none(), "real names in any script pass");
    }

    #[test]
    fn bio_is_optional_and_bounded_in_characters() {
        assert!(bio("").is_none());
        assert!(bio(&"é".repeat(500)).is_none());
        assert!(bio(&format!("{}\n", "x".repeat(500))).is_none());
        assert!(bio(&"x".repeat(501)).is_some_and(|m| m.contains("500")));
    }
}
