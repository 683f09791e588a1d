//! The page for unknown paths; answers with HTTP 404 on the server.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::icons::{Icon, IconName};

#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }

    view! {
        <Title text="Page not found"/>
        <div class="hero min-h-[60vh]">
            <div class="hero-content text-center">
                <div class="max-w-md">
                    <p class="text-7xl font-black text-primary">"404"</p>
                    <h1 class="mt-4 text-3xl font-bold">"Page not found"</h1>
                    <p class="mt-3 text-base-content/70">
                        "This conversation does not exist, or it moved somewhere else."
                    </p>
                    <A href="/" attr:class="btn btn-primary mt-8 gap-2">
                        <Icon icon=IconName::Home class="size-4"/>
                        "Back to home"
                    </A>
                </div>
            </div>
        </div>
    }
}
