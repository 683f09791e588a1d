//! Runtime configuration: built-in defaults, overridden by `Leptos.toml`'s
//! `[charcha]` table, overridden by `.env`, overridden by the environment.
//! Env names follow the original app where it had one (JWT_SECRET,
//! JWT_EXPIRATION, MONGODB_URI, REDIS_URL, KAFKA_TOPIC, SERVER_PORT, …).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Every environment variable Charcha reads (besides RUST_LOG and the
/// LEPTOS_* variables cargo-leptos defines). Deployment files are checked
/// against this list (tests/compose.rs).
pub const ENV_VARS: &[&str] = &[
    "CHARCHA_CONFIG",
    "CHARCHA_ENV",
    "SERVER_PORT",
    "CHARCHA_DATA_DIR",
    "JWT_SECRET",
    "JWT_EXPIRATION",
    "CHARCHA_MAX_JSON_BYTES",
    "CHARCHA_AVATAR_MAX_BYTES",
    "CHARCHA_IMAGE_MAX_BYTES",
    "CHARCHA_AUTH_RATE_PER_MINUTE",
    "CHARCHA_SEND_RATE_PER_MINUTE",
    "CHARCHA_WS_QUEUE",
    "CHARCHA_TRUSTED_PROXIES",
    "CHARCHA_LOGIN_MAX_FAILURES",
    "CHARCHA_UPLOADS_PER_HOUR",
    "CHARCHA_UPLOAD_BYTES_PER_HOUR",
    "CHARCHA_MEDIA_GC_GRACE",
    "CHARCHA_WS_PER_USER",
    "CHARCHA_PROFILE_UPDATES_PER_HOUR",
    "CHARCHA_WATCH_RATE_PER_MINUTE",
    "CHARCHA_HEADER_READ_TIMEOUT",
    "CHARCHA_METRICS_TOKEN",
    "CHARCHA_METRICS_ADDR",
    "MONGODB_URI",
    "REDIS_URL",
    "CHARCHA_REDIS_PREFIX",
    "KAFKA_BROKERS",
    "KAFKA_TOPIC",
    "KAFKA_PARTITIONS",
    "KAFKA_REPLICATION_FACTOR",
    "CHARCHA_WORKER",
    "WORKER_INDEX",
    "WORKER_COUNT",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(
        "JWT_SECRET must be set to at least 32 random characters when CHARCHA_ENV=production \
         (generate one with: openssl rand -base64 48)"
    )]
    WeakSecret,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    Development,
    Production,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_json_bytes: usize,
    pub avatar_max_bytes: usize,
    pub image_max_bytes: usize,
    pub auth_rate_per_minute: u32,
    /// Messages one user may send per minute, all sessions together.
    pub send_rate_per_minute: u32,
    pub ws_queue: usize,
    /// Failed log-ins for one account (in [`crate::server::ratelimit::LOGIN_FAILURE_WINDOW`])
    /// before it is locked with a growing, capped delay.
    pub login_max_failures: u32,
    /// Image and avatar uploads one user may make per hour, and their bytes.
    pub uploads_per_hour: u32,
    pub upload_bytes_per_hour: u64,
    /// Media older than this that no message or avatar references is deleted.
    pub media_gc_grace: Duration,
    /// Open WebSockets per user on one instance; the next upgrade is refused.
    pub ws_per_user: usize,
    /// Profile edits one user may make per hour (each is broadcast to watchers).
    pub profile_updates_per_hour: u32,
    /// `watch` frames one user may send per minute, all sessions together.
    pub watch_rate_per_minute: u32,
    /// How long a connection may take to send a request's headers, counted
    /// from when it starts waiting for one: also the idle keep-alive limit.
    pub header_read_timeout: Duration,
}

/// Which drivers to run. Empty = embedded.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    pub mongodb_uri: Option<String>,
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (CHARCHA_REDIS_PREFIX).
    pub redis_prefix: String,
    pub kafka_brokers: Vec<String>,
    pub kafka_topic: String,
    /// Partitions of a topic Charcha creates (KAFKA_PARTITIONS).
    pub kafka_partitions: i32,
    /// Replication factor of a topic Charcha creates (KAFKA_REPLICATION_FACTOR).
    pub kafka_replication: i16,
}

/// Which log partitions this process's history worker consumes.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Run the worker inside the server (CHARCHA_WORKER=on|off).
    pub enabled: bool,
    /// This worker's index among `count` (WORKER_INDEX, WORKER_COUNT):
    /// it takes partitions p with p % count == index.
    pub index: u32,
    pub count: u32,
}

impl WorkerConfig {
    pub fn owns(&self, partition: i32) -> bool {
        partition.rem_euclid(self.count.max(1) as i32) as u32 == self.index
    }
}

#[derive(Clone)]
pub struct Config {
    pub mode: RunMode,
    pub site_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub jwt_secret: Vec<u8>,
    /// True when no JWT_SECRET was given and one was generated for this run.
    pub jwt_secret_generated: bool,
    pub jwt_expiration: Duration,
    pub limits: Limits,
    pub backends: Backends,
    pub worker: WorkerConfig,
    /// Proxies whose `X-Forwarded-For` is believed (CHARCHA_TRUSTED_PROXIES).
    pub trusted_proxies: crate::server::client_ip::TrustedProxies,
    /// Bearer token that unlocks `/metrics` on the site address
    /// (CHARCHA_METRICS_TOKEN; env/.env only, like JWT_SECRET).
    pub metrics_token: Option<String>,
    /// A separate address serving only `/metrics` (CHARCHA_METRICS_ADDR).
    pub metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("site_addr", &self.site_addr)
            .field("data_dir", &self.data_dir)
            .field("jwt_secret", &"<redacted>")
            .field("jwt_expiration", &self.jwt_expiration)
            .field("limits", &self.limits)
            .field("backends", &self.backends)
            .field("worker", &self.worker)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "<redacted>"))
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl Config {
    pub fn is_production(&self) -> bool {
        self.mode == RunMode::Production
    }

    /// Loads `.env` (without overriding real env vars), then `Leptos.toml`
    /// (or `CHARCHA_CONFIG`), then applies env overrides. `site_addr` is the
    /// address Leptos resolved (LEPTOS_SITE_ADDR); SERVER_PORT replaces its port.
    pub fn load(site_addr: SocketAddr) -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth a warning only.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            tracing::warn!("ignoring .env: {e}");
        }
        let path = std::env::var("CHARCHA_CONFIG").unwrap_or_else(|_| "Leptos.toml".into());
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => FileConfig::parse(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var("CHARCHA_CONFIG").is_err() => {
                FileConfig::default()
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_sources(site_addr, file.charcha, &|k| std::env::var(k).ok())
    }

    /// Pure merge of a parsed file and an environment lookup; unit-testable.
    pub fn from_sources(
        mut site_addr: SocketAddr,
        file: CharchaSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            debug_assert!(ENV_VARS.contains(&key), "{key} missing from ENV_VARS");
            env(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
        };

        let mode_text = get("CHARCHA_ENV").unwrap_or(file.env);
        let mode = match mode_text.to_ascii_lowercase().as_str() {
            "production" | "prod" => RunMode::Production,
            "development" | "dev" => RunMode::Development,
            other => {
                return Err(ConfigError::Invalid {
                    key: "CHARCHA_ENV",
                    message: format!("`{other}` is not production|development"),
                });
            }
        };
        if let Some(port) = get("SERVER_PORT") {
            let port: u16 = port
                .parse()
                .map_err(|_| ConfigError::Invalid { key: "SERVER_PORT", message: format!("`{port}` is not a port") })?;
            site_addr.set_port(port);
        }
        let data_dir = PathBuf::from(get("CHARCHA_DATA_DIR").unwrap_or(file.data_dir));
        let jwt_expiration_text = get("JWT_EXPIRATION").unwrap_or(file.jwt_expiration);
        let jwt_expiration = parse_duration(&jwt_expiration_text).ok_or_else(|| ConfigError::Invalid {
            key: "JWT_EXPIRATION",
            message: format!("`{jwt_expiration_text}` (use e.g. 30m, 12h, 7d)"),
        })?;

        let (jwt_secret, jwt_secret_generated) = match get("JWT_SECRET") {
            Some(s) if s.len() >= 32 && secret_entropy_bits(s.as_bytes()) >= MIN_SECRET_BITS => (s.into_bytes(), false),
            Some(_) | None if mode == RunMode::Production => return Err(ConfigError::WeakSecret),
            Some(s) => {
                // Development with a short secret: usable, but say so.
                tracing::warn!("JWT_SECRET is short or predictable; fine for development only");
                (s.into_bytes(), false)
            }
            None => {
                use rand::RngCore;
                let mut bytes = vec![0u8; 48];
                rand::thread_rng().fill_bytes(&mut bytes);
                (bytes, true)
            }
        };

        let num = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(key) {
                None => Ok(default),
                Some(v) => {
                    v.parse().map_err(|_| ConfigError::Invalid { key, message: format!("`{v}` is not a number") })
                }
            }
        };
        let duration = |key: &'static str, default: &str| -> Result<Duration, ConfigError> {
            let text = get(key).unwrap_or_else(|| default.to_string());
            parse_duration(&text)
                .ok_or_else(|| ConfigError::Invalid { key, message: format!("`{text}` (use e.g. 10s, 30m, 1h)") })
        };
        let l = file.limits;
        let limits = Limits {
            max_json_bytes: num("CHARCHA_MAX_JSON_BYTES", l.max_json_bytes)? as usize,
            avatar_max_bytes: num("CHARCHA_AVATAR_MAX_BYTES", l.avatar_max_bytes)? as usize,
            image_max_bytes: num("CHARCHA_IMAGE_MAX_BYTES", l.image_max_bytes)? as usize,
            auth_rate_per_minute: num("CHARCHA_AUTH_RATE_PER_MINUTE", l.auth_rate_per_minute as u64)? as u32,
            send_rate_per_minute: num("CHARCHA_SEND_RATE_PER_MINUTE", l.send_rate_per_minute as u64)? as u32,
            ws_queue: (num("CHARCHA_WS_QUEUE", l.ws_queue)? as usize).max(8),
            login_max_failures: (num("CHARCHA_LOGIN_MAX_FAILURES", l.login_max_failures.into())?.clamp(1, 1000)) as u32,
            uploads_per_hour: num("CHARCHA_UPLOADS_PER_HOUR", l.uploads_per_hour.into())?.min(u32::MAX.into()) as u32,
            upload_bytes_per_hour: num("CHARCHA_UPLOAD_BYTES_PER_HOUR", l.upload_bytes_per_hour)?,
            media_gc_grace: duration("CHARCHA_MEDIA_GC_GRACE", &l.media_gc_grace)?,
            ws_per_user: (num("CHARCHA_WS_PER_USER", l.ws_per_user)?.max(1)) as usize,
            profile_updates_per_hour: num("CHARCHA_PROFILE_UPDATES_PER_HOUR", l.profile_updates_per_hour.into())?
                .min(u32::MAX.into()) as u32,
            watch_rate_per_minute: num("CHARCHA_WATCH_RATE_PER_MINUTE", l.watch_rate_per_minute.into())?
                .min(u32::MAX.into()) as u32,
            header_read_timeout: duration("CHARCHA_HEADER_READ_TIMEOUT", &l.header_read_timeout)?,
        };
        let proxies_text = get("CHARCHA_TRUSTED_PROXIES").unwrap_or(file.trusted_proxies);
        let trusted_proxies = crate::server::client_ip::TrustedProxies::parse(&proxies_text)
            .map_err(|e| ConfigError::Invalid { key: "CHARCHA_TRUSTED_PROXIES", message: e.to_string() })?;
        let metrics_token = get("CHARCHA_METRICS_TOKEN");
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Invalid {
                key: "CHARCHA_METRICS_TOKEN",
                message: "use at least 16 random characters (openssl rand -hex 24)".into(),
            });
        }
        let metrics_addr = match get("CHARCHA_METRICS_ADDR").or_else(|| non_empty_text(file.metrics_addr)) {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                key: "CHARCHA_METRICS_ADDR",
                message: format!("`{a}` is not host:port (e.g. 0.0.0.0:9100)"),
            })?),
        };
        let b = file.backends;
        let non_empty = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        let backends = Backends {
            mongodb_uri: get("MONGODB_URI").or_else(|| non_empty(b.mongodb_uri)),
            redis_url: get("REDIS_URL").or_else(|| non_empty(b.redis_url)),
            redis_prefix: get("CHARCHA_REDIS_PREFIX").unwrap_or(b.redis_prefix),
            kafka_brokers: get("KAFKA_BROKERS")
                .unwrap_or(b.kafka_brokers)
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            kafka_topic: get("KAFKA_TOPIC").unwrap_or(b.kafka_topic),
            kafka_partitions: (num("KAFKA_PARTITIONS", b.kafka_partitions)?.clamp(1, 1024)) as i32,
            kafka_replication: (num("KAFKA_REPLICATION_FACTOR", b.kafka_replication)?.clamp(1, 16)) as i16,
        };
        let w = file.worker;
        let enabled = match get("CHARCHA_WORKER").map(|v| v.to_ascii_lowercase()) {
            None => w.enabled,
            Some(v) if matches!(v.as_str(), "on" | "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "off" | "false" | "0" | "no") => false,
            Some(v) => {
                return Err(ConfigError::Invalid { key: "CHARCHA_WORKER", message: format!("`{v}` is not on|off") });
            }
        };
        let count = num("WORKER_COUNT", w.count)?.max(1) as u32;
        let index = num("WORKER_INDEX", w.index)? as u32;
        if index >= count {
            return Err(ConfigError::Invalid {
                key: "WORKER_INDEX",
                message: format!("{index} is not below WORKER_COUNT {count}"),
            });
        }
        let worker = WorkerConfig { enabled, index, count };
        Ok(Self {
            mode,
            site_addr,
            data_dir,
            jwt_secret,
            jwt_secret_generated,
            jwt_expiration,
            limits,
            backends,
            worker,
            trusted_proxies,
            metrics_token,
            metrics_addr,
        })
    }

    /// A configuration for tests: development mode, given data dir, fixed secret.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut cfg = Self::from_sources(SocketAddr::from(([127, 0, 0, 1], 0)), CharchaSection::default(), &|_| None)
            .unwrap_or_else(|e| panic!("default config must be valid: {e}"));
        cfg.data_dir = data_dir;
        cfg.jwt_secret = b"test-secret-test-secret-test-secret-0123".to_vec();
        cfg.jwt_secret_generated = false;
        cfg
    }
}

fn non_empty_text(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

/// Parses `90s`, `30m`, `12h`, `7d`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    #[serde(default)]
    pub charcha: CharchaSection,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CharchaSection {
    pub env: String,
    pub data_dir: String,
    pub jwt_expiration: String,
    /// Comma-separated IPs/CIDRs of reverse proxies (CHARCHA_TRUSTED_PROXIES).
    pub trusted_proxies: String,
    /// host:port serving only `/metrics` (CHARCHA_METRICS_ADDR); empty = none.
    pub metrics_addr: String,
    pub limits: LimitsSection,
    pub backends: BackendsSection,
    pub worker: WorkerSection,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    pub enabled: bool,
    pub index: u64,
    pub count: u64,
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self { enabled: true, index: 0, count: 1 }
    }
}

impl Default for CharchaSection {
    fn default() -> Self {
        Self {
            env: "development".into(),
            data_dir: "./data".into(),
            jwt_expiration: "7d".into(),
            trusted_proxies: String::new(),
            metrics_addr: String::new(),
            limits: LimitsSection::default(),
            backends: BackendsSection::default(),
            worker: WorkerSection::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    pub max_json_bytes: u64,
    pub avatar_max_bytes: u64,
    pub image_max_bytes: u64,
    pub auth_rate_per_minute: u32,
    pub send_rate_per_minute: u32,
    pub ws_queue: u64,
    pub login_max_failures: u32,
    pub uploads_per_hour: u32,
    pub upload_bytes_per_hour: u64,
    pub media_gc_grace: String,
    pub ws_per_user: u64,
    pub profile_updates_per_hour: u32,
    pub watch_rate_per_minute: u32,
    pub header_read_timeout: String,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_json_bytes: 64 * 1024,
            avatar_max_bytes: 2 * 1024 * 1024,
            image_max_bytes: 5 * 1024 * 1024,
            auth_rate_per_minute: 20,
            send_rate_per_minute: 600,
            ws_queue: 256,
            login_max_failures: 5,
            uploads_per_hour: 60,
            upload_bytes_per_hour: 50 * 1024 * 1024,
            media_gc_grace: "1h".into(),
            ws_per_user: 20,
            profile_updates_per_hour: 30,
            watch_rate_per_minute: 240,
            header_read_timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendsSection {
    pub mongodb_uri: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub kafka_brokers: String,
    pub kafka_topic: String,
    pub kafka_partitions: u64,
    pub kafka_replication: u64,
}

impl Default for BackendsSection {
    fn default() -> Self {
        Self {
            mongodb_uri: String::new(),
            redis_url: String::new(),
            redis_prefix: "charcha".into(),
            kafka_brokers: String::new(),
            kafka_topic: "chat-messages".into(),
            kafka_partitions: 6,
            kafka_replication: 1,
        }
    }
}

/// Least estimated entropy of a production JWT_SECRET, bits.
const MIN_SECRET_BITS: f64 = 128.0;

/// Entropy estimate of a secret from its byte frequencies (Shannon, times
/// its length): 32 × `a` is 0 bits, 32 random base64 characters about 160.
/// Not a proof of randomness, but it refuses the repeated, the short and the
/// dictionary-like ("passwordpassword…").
fn secret_entropy_bits(secret: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for b in secret {
        counts[*b as usize] += 1;
    }
    let n = secret.len() as f64;
    let per_byte: f64 = counts.iter().filter(|c| **c > 0).map(|&c| -(c as f64 / n) * (c as f64 / n).log2()).sum();
    per_byte * n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 3000))
    }

    #[test]
    fn repo_leptos_toml_parses() {
        let text = include_str!("../../Leptos.toml");
        let file = FileConfig::parse(text).expect("Leptos.toml must parse");
        assert_eq!(file.charcha.backends.kafka_topic, "chat-messages");
    }

    #[test]
    fn env_overrides_file() {
        let env = |k: &str| match k {
            "SERVER_PORT" => Some("5000".into()),
            "JWT_EXPIRATION" => Some("12h".into()),
            "KAFKA_BROKERS" => Some("a:9092, b:9092".into()),
            _ => None,
        };
        let cfg = Config::from_sources(addr(), CharchaSection::default(), &env).unwrap();
        assert_eq!(cfg.site_addr.port(), 5000);
        assert_eq!(cfg.jwt_expiration, Duration::from_secs(12 * 3600));
        assert_eq!(cfg.backends.kafka_brokers, vec!["a:9092", "b:9092"]);
        assert!(cfg.jwt_secret_generated);
    }

    #[test]
    fn production_requires_strong_secret() {
        let weak = |k: &str| match k {
            "CHARCHA_ENV" => Some("production".into()),
            "JWT_SECRET" => Some("short".into()),
            _ => None,
        };
        assert!(matches!(Config::from_sources(addr(), CharchaSection::default(), &weak), Err(ConfigError::WeakSecret)));
        let missing = |k: &str| (k == "CHARCHA_ENV").then(|| "production".to_string());
        assert!(matches!(
            Config::from_sources(addr(), CharchaSection::default(), &missing),
            Err(ConfigError::WeakSecret)
        ));
        for predictable in ["a".repeat(32), "ab".repeat(20), "passwordpassword".repeat(2)] {
            let env = |k: &str| match k {
                "CHARCHA_ENV" => Some("production".into()),
                "JWT_SECRET" => Some(predictable.clone()),
                _ => None,
            };
            assert!(
                matches!(Config::from_sources(addr(), CharchaSection::default(), &env), Err(ConfigError::WeakSecret)),
                "{predictable} is refused"
            );
        }
        let strong = |k: &str| match k {
            "CHARCHA_ENV" => Some("production".into()),
            "JWT_SECRET" => Some("kQ3v9Zp1Lx7Rt2Wm8Yb4Nc6Hd0Fg5Js-Ua_Ee".into()),
            _ => None,
        };
        assert!(Config::from_sources(addr(), CharchaSection::default(), &strong).unwrap().is_production());
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let env = |k: &str| (k == "JWT_EXPIRATION").then(|| "forever".to_string());
        assert!(Config::from_sources(addr(), CharchaSection::default(), &env).is_err());
        let env = |k: &str| (k == "SERVER_PORT").then(|| "99999".to_string());
        assert!(Config::from_sources(addr(), CharchaSection::default(), &env).is_err());
        assert!(FileConfig::parse("[charcha]\nunknown = 1").is_err());
        for (key, value) in [
            ("CHARCHA_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("CHARCHA_TRUSTED_PROXIES", "nginx"),
            ("CHARCHA_METRICS_ADDR", "everywhere"),
            ("CHARCHA_METRICS_TOKEN", "short"),
            ("CHARCHA_HEADER_READ_TIMEOUT", "0s"),
            ("CHARCHA_MEDIA_GC_GRACE", "soon"),
        ] {
            let env = |k: &str| (k == key).then(|| value.to_string());
            assert!(Config::from_sources(addr(), CharchaSection::default(), &env).is_err(), "{key}={value}");
        }
    }

    #[test]
    fn security_settings_have_safe_defaults_and_parse() {
        let cfg = Config::from_sources(addr(), CharchaSection::default(), &|_| None).unwrap();
        assert!(cfg.trusted_proxies.is_empty(), "nobody is trusted by default");
        assert!(cfg.metrics_token.is_none() && cfg.metrics_addr.is_none(), "/metrics is not served by default");
        assert_eq!(cfg.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.limits.media_gc_grace, Duration::from_secs(3600));
        assert_eq!((cfg.limits.uploads_per_hour, cfg.limits.upload_bytes_per_hour), (60, 50 * 1024 * 1024));
        let env = |k: &str| match k {
            "CHARCHA_TRUSTED_PROXIES" => Some("10.0.0.0/8, 192.168.1.7".into()),
            "CHARCHA_METRICS_ADDR" => Some("0.0.0.0:9100".into()),
            "CHARCHA_METRICS_TOKEN" => Some("0123456789abcdef0123".into()),
            _ => None,
        };
        let cfg = Config::from_sources(addr(), CharchaSection::default(), &env).unwrap();
        assert!(cfg.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(!cfg.trusted_proxies.contains("192.168.1.8".parse().unwrap()));
        assert_eq!(cfg.metrics_addr, Some("0.0.0.0:9100".parse().unwrap()));
        assert!(!format!("{cfg:?}").contains("0123456789abcdef"), "the metrics token is redacted");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5y"), None);
    }
}
