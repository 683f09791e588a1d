//! A user's picture, or their initials on a coloured disc when they have none.

use leptos::prelude::*;

/// Avatar sizes, as Tailwind width classes (written out so Tailwind sees them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AvatarSize {
    /// 32 px: lists, message rows.
    Small,
    /// 40 px: navbar, chat header.
    #[default]
    Medium,
    /// 128 px: the profile page.
    Large,
}

impl AvatarSize {
    fn classes(self) -> (&'static str, &'static str) {
        // (box, initials text)
        match self {
            Self::Small => ("w-8", "text-xs"),
            Self::Medium => ("w-10", "text-sm"),
            Self::Large => ("w-32", "text-4xl"),
        }
    }
}

/// Up to two initials from a full name ("Ada Lovelace" → "AL"), as typed:
/// the placeholder shows them in capitals with CSS (`uppercase`), so the
/// client carries no Unicode case tables for them (BENCHMARKS.md, client size).
pub fn initials(full_name: &str) -> String {
    let initials: String = full_name.split_whitespace().filter_map(|word| word.chars().next()).take(2).collect();
    if initials.is_empty() { "?".to_string() } else { initials }
}

/// `url` empty → initials placeholder.
///
/// The image's alt text is the person's name. Pass `decorative` when the
/// name is printed right next to the avatar, so screen readers do not read
/// it twice. The initials placeholder is always decorative.
#[component]
pub fn Avatar(
    #[prop(into)] name: String,
    #[prop(into)] url: String,
    #[prop(optional)] size: AvatarSize,
    #[prop(optional)] decorative: bool,
    /// Draws a ring around the disc (e.g. the current user, a selected contact).
    #[prop(optional)]
    ring: bool,
) -> impl IntoView {
    let (box_class, text_class) = size.classes();
    let ring_class = if ring { "ring-primary ring-offset-base-100 ring-2 ring-offset-2" } else { "" };
    if url.is_empty() {
        let initials = initials(&name);
        view! {
            <div class="avatar avatar-placeholder shrink-0" aria-hidden="true">
                <div class=format!(
                    "{box_class} {ring_class} rounded-full bg-primary text-primary-content",
                )>
                    <span class=format!("{text_class} font-semibold uppercase")>{initials}</span>
                </div>
            </div>
        }
        .into_any()
    } else {
        let alt = if decorative { String::new() } else { name };
        view! {
            <div class="avatar shrink-0">
                <div class=format!("{box_class} {ring_class} rounded-full bg-base-300")>
                    <img src=url alt=alt loading="lazy" decoding="async"/>
                </div>
            </div>
        }
        .into_any()
    }
}

#[cfg(test)]
mod tests {
    use super::initials;

    #[test]
    fn takes_first_letters_of_two_words() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("  grace   brewster hopper "), "gb");
        assert_eq!(initials("Ω"), "Ω");
        assert_eq!(initials("élodie"), "é");
        assert_eq!(initials("   "), "?");
    }
}
