//! `/`: the hero, a glimpse of a conversation, the features, and how a
//! message travels. Everything but the call to action is static; the call
//! to action depends on the session, which the server resolves before it
//! sends the page, so the whole page arrives rendered.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::{
    icons::{Icon, IconName},
    session::use_session,
};

#[component]
pub fn LandingPage() -> impl IntoView {
    view! {
        <Title text="Real-time chat that scales"/>
        <Hero/>
        <Features/>
        <MessageJourney/>
    }
}

#[component]
fn Hero() -> impl IntoView {
    view! {
        <section class="relative isolate overflow-hidden" aria-labelledby="hero-title">
            // Soft colour glow behind the headline.
            <div class="pointer-events-none absolute inset-0 -z-10" aria-hidden="true">
                <div class="absolute left-1/2 top-[-8rem] h-[28rem] w-[28rem] -translate-x-[70%] rounded-full bg-primary/20 blur-3xl"></div>
                <div class="absolute left-1/2 top-[-4rem] h-[22rem] w-[22rem] translate-x-[10%] rounded-full bg-secondary/20 blur-3xl"></div>
            </div>
            <div class="mx-auto max-w-5xl px-4 pb-12 pt-16 text-center sm:pt-24">
                <span class="badge badge-soft badge-primary gap-2 px-4 py-3 font-medium">
                    <Icon icon=IconName::Zap class="size-4"/>
                    "Chat with your friends on Charcha"
                </span>
                <h1
                    id="hero-title"
                    class="mt-6 text-4xl font-extrabold leading-tight tracking-tight sm:text-6xl"
                >
                    "Connect, Chat, and "
                    <span class="text-primary">
                        "Collaborate"
                    </span>
                </h1>
                <p class="mx-auto mt-6 max-w-2xl text-lg text-base-content/70 sm:text-xl">
                    "A scalable real-time chat: messages arrive over WebSockets in milliseconds, "
                    "Redis pub/sub fans them out across servers, and Kafka and MongoDB keep every "
                    "conversation safe. Built for teams, designed for everyone."
                </p>
                <div class="mt-10 flex flex-wrap items-center justify-center gap-3">
                    <HeroActions/>
                </div>
            </div>
            <ChatPreview/>
        </section>
    }
}

/// "Sign up"/"Log in" for visitors, "Open chat" for signed-in users.
#[component]
fn HeroActions() -> impl IntoView {
    let session = use_session();
    view! {
        <Transition fallback=|| {
            view! {
                <span class="skeleton h-12 w-36" aria-hidden="true"></span>
                <span class="skeleton h-12 w-28" aria-hidden="true"></span>
            }
        }>
            {move || Suspend::new(async move {
                if session.current_user().await.is_some() {
                    view! {
                        <A href="/chat" attr:class="btn btn-primary btn-lg gap-2">
                            "Open chat"
                            <Icon icon=IconName::ArrowRight/>
                        </A>
                    }
                        .into_any()
                } else {
                    view! {
                        <A href="/signup" attr:class="btn btn-primary btn-lg gap-2">
                            "Sign up"
                            <Icon icon=IconName::ArrowRight/>
                        </A>
                        <A href="/login" attr:class="btn btn-outline btn-lg">
                            "Log in"
                        </A>
                    }
                        .into_any()
                }
            })}
        </Transition>
    }
}

/// A decorative sample conversation, like a screenshot of the app.
#[component]
fn ChatPreview() -> impl IntoView {
    view! {
        <div class="mx-auto max-w-4xl px-4 pb-16" aria-hidden="true">
            <div class="rounded-3xl bg-base-300/60 p-3 shadow-2xl sm:p-6">
                <div class="mockup-window border border-base-300 bg-base-100">
                    <div class="flex flex-col gap-1 border-t border-base-300 p-4 text-left sm:p-6">
                        <div class="chat chat-start">
                            <div class="chat-header mb-1 text-xs opacity-60">"Asha"</div>
                            <div class="chat-bubble">"Hey team! Ready for today's standup?"</div>
                        </div>
                        <div class="chat chat-end">
                            <div class="chat-bubble chat-bubble-primary">
                                "Let me share the latest updates."
                            </div>
                            <div class="chat-footer mt-1 text-xs opacity-60">"Delivered"</div>
                        </div>
                        <div class="chat chat-start">
                            <div class="chat-bubble">"Perfect! Three servers, zero lost messages."</div>
                        </div>
                        <div class="chat chat-start">
                            <div class="chat-bubble">
                                <span class="loading loading-dots loading-sm"></span>
                            </div>
                        </div>
                    </div>
                </div>
            </div>
        </div>
    }
}

struct Feature {
    icon: IconName,
    title: &'static str,
    text: &'static str,
}

const FEATURES: &[Feature] = &[
    Feature {
        icon: IconName::Zap,
        title: "Real-time WebSockets",
        text: "Messages, typing and presence travel over one WebSocket per tab and land in milliseconds.",
    },
    Feature {
        icon: IconName::Broadcast,
        title: "Redis pub/sub scale-out",
        text: "Run many servers behind a load balancer; Redis pub/sub delivers each event to whichever instance holds the recipient.",
    },
    Feature {
        icon: IconName::Layers,
        title: "Kafka durability",
        text: "Messages stream through Kafka, decoupling delivery from storage so bursts and restarts lose nothing.",
    },
    Feature {
        icon: IconName::Database,
        title: "MongoDB history",
        text: "A history worker persists every conversation; scroll back through it page by page.",
    },
    Feature {
        icon: IconName::Palette,
        title: "Themes",
        text: "From light to synthwave: pick a look in Settings. It is remembered and painted by the server, with no flash.",
    },
    Feature {
        icon: IconName::Shield,
        title: "Secure accounts",
        text: "Argon2-hashed passwords and signed session cookies. One binary runs embedded or fully distributed.",
    },
];

#[component]
fn Features() -> impl IntoView {
    view! {
        <section class="bg-base-200/60 py-20" aria-labelledby="features-title">
            <div class="mx-auto max-w-6xl px-4">
                <div class="mx-auto max-w-2xl text-center">
                    <h2 id="features-title" class="text-3xl font-bold tracking-tight sm:text-4xl">
                        "Built to scale from day one"
                    </h2>
                    <p class="mt-4 text-base-content/70">
                        "The architecture of a large chat service, in a single Rust codebase that renders on the server and runs as WebAssembly in your browser."
                    </p>
                </div>
                <ul class="mt-12 grid gap-6 sm:grid-cols-2 lg:grid-cols-3">
                    {FEATURES
                        .iter()
                        .map(|feature| {
                            view! {
                                <li class="card border border-base-300 bg-base-100 shadow-sm transition hover:-translate-y-0.5 hover:shadow-md">
                                    <div class="card-body">
                                        <span class="w-fit rounded-xl bg-primary/10 p-3 text-primary">
                                            <Icon icon=feature.icon class="size-6"/>
                                        </span>
                                        <h3 class="card-title mt-2 text-lg">{feature.title}</h3>
                                        <p class="text-base-content/70">{feature.text}</p>
                                    </div>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </div>
        </section>
    }
}

/// The path of one message through the system, as steps.
#[component]
fn MessageJourney() -> impl IntoView {
    const STEPS: &[(&str, &str)] = &[
        ("Browser", "sends over a WebSocket"),
        ("Chat server", "validates and publishes"),
        ("Redis", "fans out to every instance"),
        ("Kafka", "buffers it durably"),
        ("MongoDB", "keeps the history"),
    ];
    view! {
        <section class="py-20" aria-labelledby="journey-title">
            <div class="mx-auto max-w-5xl px-4 text-center">
                <h2 id="journey-title" class="text-3xl font-bold tracking-tight">
                    "How a message travels"
                </h2>
                <p class="mt-4 text-base-content/70">
                    "Real-time delivery and durable storage are separate paths, so neither slows the other down."
                </p>
                <ol class="steps steps-vertical mt-10 w-full lg:steps-horizontal">
                    {STEPS
                        .iter()
                        .map(|(name, what)| {
                            view! {
                                <li class="step step-primary">
                                    <span class="flex flex-col text-left lg:text-center">
                                        <span class="font-semibold">{*name}</span>
                                        <span class="text-sm text-base-content/60">{*what}</span>
                                    </span>
                                </li>
                            }
                        })
                        .collect_view()}
                </ol>
            </div>
        </section>
    }
}
