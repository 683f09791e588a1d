//! Server side (feature `ssr`): configuration, services, drivers, routes.
//!
//! ```text
//! browser ──ws──> gateway ──> chat ──> log ──> worker ──> store (history)
//!                    ^          └────> bus ──> hub ──> every member's sessions
//!        REST / server fns ─────┘
//! ```

pub mod assets;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod claims;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod gateway;
pub mod guard;
pub mod hub;
pub mod image_meta;
pub mod log;
pub mod media;
pub mod metrics;
pub mod outage;
pub mod periodic;
pub mod presence;
pub mod quota;
pub mod ratelimit;
pub mod redis_conn;
pub mod rest;
pub mod serve;
pub mod state;
pub mod store;
pub mod web;
pub mod worker;

/// A fresh directory of its own for one test's files (`what` names the
/// test's module in the path).
#[cfg(test)]
pub(crate) fn test_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("charcha-{what}-test-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::Router;
use leptos::{config::LeptosOptions, prelude::provide_context};
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use self::{
    auth::{AuthService, token::TokenService},
    bus::{Bus, local::LocalBus},
    chat::ChatService,
    config::Config,
    hub::Hub,
    log::{Log, local::LocalLog},
    presence::{Presence, local::LocalPresence},
    quota::Quotas,
    ratelimit::{
        LoginPolicy, LoginThrottle, RateLimiter,
        local::{LocalLoginThrottle, LocalRateLimiter},
    },
    state::AppState,
    store::{Store, embedded::EmbeddedStore},
};
use crate::app::{App, shell};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot open the log: {0}")]
    Log(#[from] log::LogError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("startup failed: {0}")]
    Other(String),
}

/// A running server: its address and the handle that stops it.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when it has its own address (CHARCHA_METRICS_ADDR).
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Graceful stop: close WebSockets (1001), finish in-flight requests,
    /// stop the worker and background jobs.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// Waits until the server stops (after [`CancellationToken::cancel`] on
    /// `shutdown_token`, e.g. from a signal handler).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// The driver behind each port. The embedded and scaled modes differ only
/// in how this is filled; everything above it is shared.
pub struct Drivers {
    pub hub: Arc<Hub>,
    pub store: Arc<dyn Store>,
    pub log: Arc<dyn Log>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub limiter: Arc<dyn RateLimiter>,
    pub login_throttle: Arc<dyn LoginThrottle>,
    /// Stops every task the drivers started.
    pub shutdown: CancellationToken,
}

/// Chooses each driver from the configuration: MONGODB_URI → MongoDB
/// store, REDIS_URL → Redis bus/presence/rate limits, KAFKA_BROKERS →
/// Kafka log; anything unset → its embedded driver.
pub async fn connect_drivers(config: &Config) -> Result<Drivers, StartError> {
    let b = &config.backends;
    let shutdown = CancellationToken::new();
    let hub = Arc::new(Hub::new(config.limits.ws_queue));
    let store = connect_store(config).await?;
    let redis = match &b.redis_url {
        Some(url) => Some(
            retry_startup("Redis", || redis_conn::connect(url)).await.map_err(|e| StartError::Other(e.to_string()))?,
        ),
        None => None,
    };
    let log = connect_log(config, redis.as_ref(), &shutdown).await?;
    type Limits = (Arc<dyn RateLimiter>, Arc<dyn LoginThrottle>);
    let (bus, presence, (limiter, login_throttle)): (Arc<dyn Bus>, Arc<dyn Presence>, Limits) = match redis {
        Some(clients) => {
            tracing::info!("bus, presence, rate limits: Redis");
            let bus: Arc<dyn Bus> = Arc::new(
                bus::redis::RedisBus::start(clients.clone(), &b.redis_prefix, hub.clone(), shutdown.clone())
                    .await
                    .map_err(|e| StartError::Other(e.to_string()))?,
            );
            let presence =
                presence::redis::RedisPresence::start(&clients, &b.redis_prefix, bus.clone(), shutdown.clone());
            let limiter = Arc::new(ratelimit::redis::RedisRateLimiter::new(clients.commands.clone(), &b.redis_prefix));
            let throttle =
                Arc::new(ratelimit::redis::RedisLoginThrottle::new(clients.commands.clone(), &b.redis_prefix));
            (bus, presence, (limiter, throttle))
        }
        None => (
            Arc::new(LocalBus::new(hub.clone())),
            Arc::new(LocalPresence::new()),
            (Arc::new(LocalRateLimiter::new()), Arc::new(LocalLoginThrottle::new())),
        ),
    };
    let scaled = [b.redis_url.is_some(), b.mongodb_uri.is_some(), !b.kafka_brokers.is_empty()];
    if scaled.contains(&true) && scaled.contains(&false) {
        tracing::warn!(
            "only some scaled drivers are configured; several instances need all of REDIS_URL, KAFKA_BROKERS and MONGODB_URI"
        );
    }
    Ok(Drivers { hub, store, log, bus, presence, limiter, login_throttle, shutdown })
}

/// The store MONGODB_URI names, or the embedded one.
async fn connect_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &config.backends.mongodb_uri {
        Some(uri) => {
            tracing::info!("store: MongoDB");
            Arc::new(retry_startup("MongoDB", || store::mongo::MongoStore::connect(uri)).await?)
        }
        None => Arc::new(EmbeddedStore::open(&config.data_dir)?),
    })
}

/// The Kafka log KAFKA_BROKERS names, or the local one. Its background
/// tasks stop with `shutdown`. Kafka's send claims live in Redis when it is
/// configured (shared by every instance), else in this process.
async fn connect_log(
    config: &Config,
    redis: Option<&redis_conn::RedisClients>,
    shutdown: &CancellationToken,
) -> Result<Arc<dyn Log>, StartError> {
    let b = &config.backends;
    if b.kafka_brokers.is_empty() {
        return Ok(Arc::new(LocalLog::open(&config.data_dir)?));
    }
    tracing::info!(brokers = ?b.kafka_brokers, topic = %b.kafka_topic, "log: Kafka");
    let claims: Arc<dyn claims::SendClaims> = match redis {
        Some(r) => Arc::new(claims::redis::RedisClaims::new(r.commands.clone(), &b.redis_prefix)),
        None => Arc::new(claims::local::LocalClaims::new()),
    };
    let log = retry_startup("Kafka", || {
        log::kafka::KafkaLog::connect(
            b.kafka_brokers.clone(),
            &b.kafka_topic,
            b.kafka_partitions,
            b.kafka_replication,
            claims.clone(),
            shutdown.clone(),
        )
    })
    .await?;
    Ok(Arc::new(log))
}

/// How long a starting server waits for a backing service to come up
/// (containers often start together).
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// Retries `connect` until it succeeds or [`STARTUP_PATIENCE`] runs out.
async fn retry_startup<T, E, F, Fut>(name: &str, mut connect: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!("{name} not reachable yet, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Builds the services on top of the drivers.
pub async fn build_state(
    config: Config,
    leptos_options: LeptosOptions,
    drivers: Drivers,
) -> Result<AppState, StartError> {
    let Drivers { hub, store, log, bus, presence, limiter, login_throttle, shutdown } = drivers;
    let tokens = TokenService::new(&config.jwt_secret, config.jwt_expiration);
    let quotas = Arc::new(Quotas::new(limiter.clone(), &config.limits));
    let auth_limits = auth::AuthLimits {
        throttle: login_throttle,
        login_policy: LoginPolicy::new(config.limits.login_max_failures),
        quotas: quotas.clone(),
    };
    let auth = AuthService::new(store.clone(), bus.clone(), presence.clone(), tokens, auth_limits)
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    let chat = ChatService::new(
        store.clone(),
        log.clone(),
        bus.clone(),
        presence.clone(),
        limiter.clone(),
        config.limits.send_rate_per_minute,
        quotas.clone(),
    );
    Ok(AppState::new(state::Services {
        config: Arc::new(config),
        leptos_options: assets::resolve_hashed_names(leptos_options),
        store,
        log,
        auth: Arc::new(auth),
        chat: Arc::new(chat),
        hub,
        bus,
        presence,
        limiter,
        quotas,
        shutdown,
    }))
}

/// The app's page routes, generated once per process.
///
/// While `generate_route_list` runs, Leptos suppresses resource loading
/// process-wide (one global flag, leptos-rs/leptos#4773): a resource first
/// polled meanwhile by a page render on another thread waits forever. A
/// process with several servers (the test suites, the multi-instance
/// tests) would otherwise build one router while another renders a page,
/// and that page would never answer. Generating once, before the first
/// router exists, means no page of this process renders during it.
fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The whole HTTP app: REST, WebSocket, server functions, SSR pages, assets.
pub fn router(state: AppState) -> Router {
    let routes = page_routes();
    let leptos_options = state.leptos_options.clone();
    let context_state = state.clone();
    let outer_limit = state.config.limits.image_max_bytes + 1024 * 1024;
    rest::routes(&state)
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            move || shell(leptos_options.clone()),
        )
        .fallback(assets::fallback(assets::Assets::new(&state.leptos_options)))
        .layer(axum::middleware::from_fn(assets::html_no_cache))
        // Server functions read raw bodies; bound every request.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(outer_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::server_fn_body_limit))
        .layer(axum::middleware::from_fn(guard::cross_site_guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::security_headers))
        .with_state(state)
}

/// Starts serving on `listener` (and `/metrics` on its own address when
/// configured), plus the history worker and housekeeping.
pub async fn start(state: AppState, listener: TcpListener) -> Result<RunningServer, StartError> {
    let addr = listener.local_addr().map_err(|e| StartError::Other(e.to_string()))?;
    let shutdown = state.shutdown.clone();
    let mut tasks = Vec::new();
    let header_read_timeout = state.config.limits.header_read_timeout;

    let metrics_listener = match state.config.metrics_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|e| StartError::Other(e.to_string()))?),
        None => None,
    };

    if state.config.worker.enabled {
        let partitions = worker::assigned_partitions(state.log.as_ref(), &state.config.worker).await?;
        tracing::info!(?partitions, "history worker runs in this server");
        tasks.push(tokio::spawn(worker::run(state.store.clone(), state.log.clone(), partitions, shutdown.clone())));
    }
    let store = state.store.clone();
    tasks.push(tokio::spawn(periodic::every(REVOCATION_PURGE_EVERY, shutdown.clone(), move || {
        purge_revocations(store.clone())
    })));
    let (store, grace) = (state.store.clone(), state.config.limits.media_gc_grace);
    tasks.push(tokio::spawn(periodic::every(media_gc_period(grace), shutdown.clone(), move || {
        collect_unreferenced_media(store.clone(), grace)
    })));

    if let Some(listener) = metrics_listener {
        tracing::info!("metrics on http://{}/metrics", metrics_addr.unwrap_or(addr));
        let metrics_app =
            Router::new().route("/metrics", axum::routing::get(metrics::private_handler)).with_state(state.clone());
        tasks.push(tokio::spawn(serve::serve(listener, metrics_app, header_read_timeout, shutdown.clone())));
    }
    let app = router(state.clone());
    tasks.push(tokio::spawn(serve::serve(listener, app, header_read_timeout, shutdown.clone())));
    Ok(RunningServer { addr, metrics_addr, state, shutdown, tasks })
}

/// Builds everything from `config` and serves on `listener`.
pub async fn launch(
    config: Config,
    leptos_options: LeptosOptions,
    listener: TcpListener,
) -> Result<RunningServer, StartError> {
    let drivers = connect_drivers(&config).await?;
    let state = build_state(config, leptos_options, drivers).await?;
    start(state, listener).await
}

const REVOCATION_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How often unreferenced media is looked for: a quarter of the grace
/// period, between 1 s (tests) and 15 minutes.
fn media_gc_period(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(15 * 60))
}

/// Media deleted per store call, so one pass never holds the store long.
const MEDIA_GC_BATCH: usize = 500;

/// Deletes media older than `grace` that no message and no avatar refers
/// to: uploads that were never sent (or whose send failed), which would
/// otherwise fill the store. The grace period covers an upload waiting for
/// its message, and the message waiting for the history worker.
async fn collect_unreferenced_media(store: Arc<dyn Store>, grace: Duration) {
    let cutoff = clock::now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    let mut total = 0u64;
    loop {
        match store.sweep_unreferenced_media(cutoff, MEDIA_GC_BATCH).await {
            Ok(sweep) => {
                total += sweep.deleted;
                if sweep.examined < MEDIA_GC_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("media clean-up failed: {e}");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!("deleted {total} unreferenced media");
    }
}

/// Forgets revocations of tokens that have expired anyway.
async fn purge_revocations(store: Arc<dyn Store>) {
    match store.purge_expired_revocations(clock::now_ms()).await {
        Ok(n) if n > 0 => tracing::info!("purged {n} expired token revocations"),
        Ok(_) => {}
        Err(e) => tracing::warn!("revocation purge failed: {e}"),
    }
}

const USAGE: &str = "\
charcha — scalable real-time chat

USAGE:
    charcha [serve]    run the web server, WebSocket gateway and history worker
    charcha worker     run only the history worker (log -> store)
    charcha precompress [SITE_ROOT]
                       write .br/.gz siblings of the built site's files (the server
                       also does this at start when it may write there)
    charcha --help     this text

Configuration: Leptos.toml ([charcha] table), .env, environment variables
(LEPTOS_SITE_ADDR, SERVER_PORT, CHARCHA_ENV, CHARCHA_DATA_DIR, JWT_SECRET,
JWT_EXPIRATION, MONGODB_URI, REDIS_URL, KAFKA_BROKERS, KAFKA_TOPIC,
CHARCHA_TRUSTED_PROXIES, CHARCHA_METRICS_TOKEN, CHARCHA_METRICS_ADDR). See README.
";

/// The binary's entry point.
pub async fn cli_main(args: Vec<String>) -> ExitCode {
    init_tracing();
    let worker_only = match args.first().map(String::as_str) {
        None | Some("serve") => false,
        Some("worker") => true,
        Some("precompress") => return assets::precompress_cli(args.get(1).map(String::as_str)),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    raise_open_file_limit();
    disable_transparent_huge_pages();
    let result = if worker_only { run_worker_only().await } else { serve().await };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("charcha: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every WebSocket is a file descriptor, and the usual soft limit (1,024,
/// or 20,000 here) caps connections long before memory does. The hard limit
/// is what the administrator allows; the soft one is raised to it. Failing
/// to raise it is logged, not fatal: the server still runs, with fewer sockets.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(from = before, to = limit.rlim_max, "raised the open-file limit");
    } else {
        tracing::warn!(limit = before, "could not raise the open-file limit; connections are capped by it");
    }
}

/// Turns transparent huge pages off for this process, as mimalloc's
/// `MIMALLOC_ALLOW_THP=0` would (an operator who sets that variable decides
/// instead). mimalloc asks the kernel for 2 MiB pages and gives freed memory
/// back at once (`MIMALLOC_PURGE_DELAY=0`, for idle memory: BENCHMARKS.md,
/// "Connections"), so under load every reuse of purged memory faulted in a
/// whole huge page and zeroed 2 MiB, and on a machine whose free memory was
/// fragmented the fault also waited for the kernel to compact it. Profiled
/// at load (b): `clear_page_erms` in huge-page faults was 11 % of the
/// server's samples; with it off, load (e)'s send→receive p99 fell from
/// 96–253 ms to 14–15 ms and its CPU per message by 10 % (BENCHMARKS.md,
/// item 10). Failing is logged, not fatal.
fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's
        // memory map; no memory is passed or touched.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            tracing::warn!("could not turn transparent huge pages off: {}", std::io::Error::last_os_error());
        }
    }
}

async fn serve() -> Result<(), StartError> {
    let leptos_options = leptos::config::get_configuration(None)
        .map_err(|e| StartError::Other(format!("Leptos configuration: {e}")))?
        .leptos_options;
    let config = Config::load(leptos_options.site_addr)?;
    if config.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: generated a random one for this run (development only); sessions end on restart"
        );
    }
    let addr = config.site_addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(mode = ?config.mode, data_dir = %config.data_dir.display(), "charcha listening on http://{addr}");
    let server = launch(config, leptos_options, listener).await?;
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    server.wait().await;
    Ok(())
}

/// `charcha worker`: the history worker alone, for deployments that scale
/// it separately from the web servers. It needs only the store and the log:
/// no sessions, so no bus or presence.
async fn run_worker_only() -> Result<(), StartError> {
    let site_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = Config::load(site_addr)?;
    let shutdown = CancellationToken::new();
    let store = connect_store(&config).await?;
    // The worker only reads the log, so it needs no send claims (no Redis).
    let log = connect_log(&config, None, &shutdown).await?;
    let partitions = worker::assigned_partitions(log.as_ref(), &config.worker).await?;
    tracing::info!(?partitions, "history worker started");
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    worker::run(store, log, partitions, shutdown).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,charcha=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn transparent_huge_pages_are_turned_off_unless_the_operator_chose() {
        super::disable_transparent_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE only reads the flag.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        let chosen = std::env::var_os("MIMALLOC_ALLOW_THP").is_some();
        assert!(chosen || disabled == 1, "PR_GET_THP_DISABLE answered {disabled}");
    }
}
