//! A small inline SVG icon set (24×24, stroked with `currentColor`), so icons
//! follow the theme's text colour and cost no extra requests. Icons are
//! decorative: they are hidden from assistive technology, and the text next
//! to them names the control.

use leptos::prelude::*;

/// The icons Charcha uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IconName {
    Chat,
    LogIn,
    LogOut,
    UserPlus,
    User,
    Sliders,
    Menu,
    Close,
    ArrowRight,
    Zap,
    Broadcast,
    Layers,
    Database,
    Palette,
    Shield,
    Server,
    Check,
    CheckCircle,
    AlertCircle,
    Info,
    Image,
    Home,
}

impl IconName {
    /// Path data of the icon, one `d` attribute per stroke.
    fn paths(self) -> &'static [&'static str] {
        match self {
            Self::Chat => &["M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"],
            Self::LogIn => &["M15 3h4a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2h-4", "M10 17l5-5-5-5", "M15 12H3"],
            Self::LogOut => &["M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4", "M16 17l5-5-5-5", "M21 12H9"],
            Self::UserPlus => &[
                "M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2",
                "M13 7a4 4 0 1 1-8 0a4 4 0 1 1 8 0",
                "M19 8v6",
                "M22 11h-6",
            ],
            Self::User => &["M19 21v-2a4 4 0 0 0-4-4H9a4 4 0 0 0-4 4v2", "M16 7a4 4 0 1 1-8 0a4 4 0 1 1 8 0"],
            Self::Sliders => &[
                "M4 21v-7",
                "M4 10V3",
                "M12 21v-9",
                "M12 8V3",
                "M20 21v-5",
                "M20 12V3",
                "M1 14h6",
                "M9 8h6",
                "M17 16h6",
            ],
            Self::Menu => &["M4 6h16", "M4 12h16", "M4 18h16"],
            Self::Close => &["M18 6L6 18", "M6 6l12 12"],
            Self::ArrowRight => &["M5 12h14", "M12 5l7 7-7 7"],
            Self::Zap => &["M13 2L3 14h9l-1 8 10-12h-9l1-8z"],
            Self::Broadcast => &[
                "M4.9 19.1C1 15.2 1 8.8 4.9 4.9",
                "M7.8 16.2c-2.3-2.3-2.3-6.1 0-8.5",
                "M16.2 7.8c2.3 2.3 2.3 6.1 0 8.5",
                "M19.1 4.9C23 8.8 23 15.1 19.1 19",
                "M14 12a2 2 0 1 1-4 0a2 2 0 1 1 4 0",
            ],
            Self::Layers => &["M12 2L2 7l10 5 10-5-10-5z", "M2 17l10 5 10-5", "M2 12l10 5 10-5"],
            Self::Database => &[
                "M21 5c0 1.66-4.03 3-9 3S3 6.66 3 5s4.03-3 9-3 9 1.34 9 3z",
                "M3 5v14c0 1.66 4 3 9 3s9-1.34 9-3V5",
                "M3 12c0 1.66 4 3 9 3s9-1.34 9-3",
            ],
            Self::Palette => &[
                "M12 22a10 10 0 1 1 10-10c0 2.2-1.8 3-3.5 3H16a2 2 0 0 0-1.5 3.3A2 2 0 0 1 12 22z",
                "M7.5 11.5h.01",
                "M10.5 7.5h.01",
                "M15.5 8.5h.01",
            ],
            Self::Shield => &["M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z", "M9 12l2 2 4-4"],
            Self::Server => &[
                "M20 2H4a2 2 0 0 0-2 2v4a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z",
                "M20 14H4a2 2 0 0 0-2 2v4a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-4a2 2 0 0 0-2-2z",
                "M6 6h.01",
                "M6 18h.01",
            ],
            Self::Check => &["M20 6L9 17l-5-5"],
            Self::CheckCircle => &["M22 11.1V12a10 10 0 1 1-5.9-9.1", "M22 4L12 14l-3-3"],
            Self::AlertCircle => &["M22 12a10 10 0 1 1-20 0a10 10 0 1 1 20 0", "M12 8v4", "M12 16h.01"],
            Self::Info => &["M22 12a10 10 0 1 1-20 0a10 10 0 1 1 20 0", "M12 16v-4", "M12 8h.01"],
            Self::Image => &[
                "M19 3H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2z",
                "M21 15l-5-5L5 21",
                "M10 8.5a1.5 1.5 0 1 1-3 0a1.5 1.5 0 1 1 3 0",
            ],
            Self::Home => &["M3 9l9-7 9 7v11a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z", "M9 22V12h6v10"],
        }
    }
}

/// An inline, decorative SVG icon. `class` sets its size (default `size-5`).
#[component]
pub fn Icon(icon: IconName, #[prop(default = "size-5")] class: &'static str) -> impl IntoView {
    view! {
        <svg
            class=class
            viewBox="0 0 24 24"
            fill="none"
            stroke="currentColor"
            stroke-width="2"
            stroke-linecap="round"
            stroke-linejoin="round"
            aria-hidden="true"
            focusable="false"
        >
            {icon.paths().iter().map(|d| view! { <path d=*d></path> }).collect_view()}
        </svg>
    }
}
