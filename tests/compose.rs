//! docker-compose.yml and deploy/ cannot run here (no Docker engine), so this
//! checks them against the app itself: every env var is one Charcha reads,
//! the configuration they produce is valid production config pointing at
//! services that exist, and nginx, Prometheus and Grafana agree with the
//! instances and with what `/metrics` really exports.
#![cfg(feature = "ssr")]

mod common;

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use charcha::server::config::{CharchaSection, Config, ENV_VARS, RunMode};
use serde_yaml::Value;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn compose() -> Value {
    let mut v: Value = serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    v.apply_merge().expect("merge keys resolve");
    // Merge keys nest one level down (services.*.environment).
    if let Some(services) = v.get_mut("services").and_then(Value::as_mapping_mut) {
        for (_, s) in services.iter_mut() {
            s.apply_merge().expect("merge");
            if let Some(env) = s.get_mut("environment") {
                env.apply_merge().expect("merge");
            }
        }
    }
    v
}

fn service_names(c: &Value) -> Vec<String> {
    c["services"].as_mapping().expect("services").keys().filter_map(|k| k.as_str().map(str::to_string)).collect()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = service.get("environment").and_then(Value::as_mapping) {
        for (k, v) in m {
            let key = k.as_str().expect("env key").to_string();
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{key}: unexpected value {other:?}"),
            };
            out.insert(key, value);
        }
    }
    out
}

fn charcha_services(c: &Value) -> Vec<(String, Value)> {
    c["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(k, s)| (k.as_str().expect("name").to_string(), s.clone()))
        .collect()
}

/// host:port of a URL-ish value (`redis://redis:6379`, `kafka:9092`, `mongodb://mongodb:27017/db`).
fn host_port(v: &str) -> (String, u16) {
    let rest = v.split("://").last().unwrap_or(v);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("port"))
}

#[test]
fn the_stack_has_every_piece() {
    let c = compose();
    let names = service_names(&c);
    for needed in
        ["charcha-1", "charcha-2", "charcha-3", "worker", "lb", "redis", "kafka", "mongodb", "prometheus", "grafana"]
    {
        assert!(names.iter().any(|n| n == needed), "service {needed} missing: {names:?}");
    }
    let kafka = environment(&c["services"]["kafka"]);
    assert_eq!(
        kafka.get("KAFKA_PROCESS_ROLES").map(String::as_str),
        Some("broker,controller"),
        "Kafka runs in KRaft mode"
    );
    let dockerfile = read("Dockerfile"); // panics "Dockerfile: <why>" when it is missing
    assert!(dockerfile.contains(" AS build"), "multi-stage Dockerfile");
    assert!(dockerfile.contains("cargo leptos build --release"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/app/charcha\"]"));
}

#[test]
fn app_env_is_valid_production_config_pointing_at_real_services() {
    let c = compose();
    let names = service_names(&c);
    let apps = charcha_services(&c);
    assert_eq!(apps.len(), 4, "three web instances and one worker");
    for (name, svc) in apps {
        let env = environment(&svc);
        for key in env.keys() {
            assert!(
                ENV_VARS.contains(&key.as_str()) || key.starts_with("LEPTOS_") || key == "RUST_LOG",
                "{name}: {key} is not a variable Charcha reads"
            );
        }
        // Resolve ${JWT_SECRET:?…} as compose would with a strong secret.
        let lookup = |k: &str| {
            env.get(k).map(|v| {
                if v.starts_with("${JWT_SECRET") {
                    "kQ3v9Zp1Lx7Rt2Wm8Yb4Nc6Hd0Fg5Js-Ua_Ee+b8/Tq".to_string()
                } else {
                    v.clone()
                }
            })
        };
        let site: SocketAddr = env.get("LEPTOS_SITE_ADDR").expect("LEPTOS_SITE_ADDR").parse().expect("site addr");
        let config = Config::from_sources(site, CharchaSection::default(), &lookup).expect("valid config");
        assert_eq!(config.mode, RunMode::Production, "{name} runs in production mode");
        let b = &config.backends;
        let (redis_host, redis_port) = host_port(b.redis_url.as_deref().expect("REDIS_URL"));
        let (mongo_host, mongo_port) = host_port(b.mongodb_uri.as_deref().expect("MONGODB_URI"));
        let (kafka_host, kafka_port) = host_port(b.kafka_brokers.first().expect("KAFKA_BROKERS"));
        for (host, port, default_port) in
            [(&redis_host, redis_port, 6379), (&mongo_host, mongo_port, 27017), (&kafka_host, kafka_port, 9092)]
        {
            assert!(names.contains(host), "{name}: {host} is not a compose service");
            assert_eq!(port, default_port, "{name}: {host} listens on {default_port}");
        }
        let kafka = environment(&c["services"]["kafka"]);
        assert!(
            kafka.get("KAFKA_ADVERTISED_LISTENERS").is_some_and(|l| l.contains(&format!("{kafka_host}:{kafka_port}"))),
            "Kafka advertises the address the app uses"
        );
        if name == "worker" {
            assert_eq!(svc["command"][0].as_str(), Some("worker"));
            assert!(config.worker.enabled);
        } else {
            assert!(!config.worker.enabled, "{name}: web instances leave history to the worker");
            assert_eq!(site.port(), 3000);
            // nginx's fixed address is the one trusted proxy: per-IP limits
            // see the clients, and nothing else may claim to be a proxy.
            let lb_ip: std::net::IpAddr = c["services"]["lb"]["networks"]["default"]["ipv4_address"]
                .as_str()
                .expect("lb has a fixed address")
                .parse()
                .expect("lb address");
            assert!(config.trusted_proxies.contains(lb_ip), "{name} trusts nginx at {lb_ip}");
            assert!(!config.trusted_proxies.contains("172.28.1.7".parse().unwrap()), "{name} trusts only nginx");
            let metrics = config.metrics_addr.expect("metrics on their own port");
            assert_ne!(metrics.port(), site.port(), "{name}: metrics are not on the port nginx exposes");
        }
    }
}

#[test]
fn nginx_balances_every_instance_and_passes_websocket_upgrades() {
    let conf = read("deploy/nginx.conf");
    let c = compose();
    for (name, svc) in charcha_services(&c) {
        if svc.get("command").is_some() {
            continue; // the worker serves no HTTP
        }
        assert!(conf.contains(&format!("server {name}:3000")), "nginx upstream has {name}");
    }
    assert!(conf.contains("proxy_set_header Upgrade $http_upgrade"));
    assert!(conf.contains("$connection_upgrade"));
    assert!(conf.contains("proxy_set_header Host $http_host"), "Host keeps its port for the Origin check");
    assert_eq!(
        conf.matches("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;").count(),
        2,
        "pages, the API and WebSockets all tell the app who the client is"
    );
    let lb = &c["services"]["lb"];
    assert!(lb["volumes"][0].as_str().is_some_and(|v| v.starts_with("./deploy/nginx.conf:")));
}

#[tokio::test]
async fn prometheus_and_grafana_match_the_metrics_endpoint() {
    let prom: Value = serde_yaml::from_str(&read("deploy/prometheus.yml")).expect("prometheus.yml");
    let job = &prom["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    let targets: Vec<&str> =
        job["static_configs"][0]["targets"].as_sequence().expect("targets").iter().filter_map(Value::as_str).collect();
    assert_eq!(targets, ["charcha-1:9100", "charcha-2:9100", "charcha-3:9100"], "the instances' metrics ports");
    let c = compose();
    let metrics_addr = environment(&c["services"]["charcha-1"]).get("CHARCHA_METRICS_ADDR").cloned();
    assert_eq!(metrics_addr.as_deref(), Some("0.0.0.0:9100"), "Prometheus scrapes CHARCHA_METRICS_ADDR");

    let server = common::TestServer::start_with(|c| c.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)))).await;
    let addr = server.metrics_addr().expect("metrics address");
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let body = metrics.text().await.expect("text");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/charcha.json")).expect("dashboard json");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for p in panels {
        let expr = p["targets"][0]["expr"].as_str().expect("expr");
        let metric = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| w.starts_with("charcha_"))
            .expect("panel queries a charcha metric");
        assert!(
            body.contains(&format!("\n{metric} "))
                || body.starts_with(&format!("{metric} "))
                || body.contains(&format!("# TYPE {metric} ")),
            "{metric} is exported"
        );
    }
    let ds: Value =
        serde_yaml::from_str(&read("deploy/grafana/provisioning/datasources/prometheus.yml")).expect("datasource");
    assert_eq!(ds["datasources"][0]["url"].as_str(), Some("http://prometheus:9090"));
    server.stop().await;
}
