//! One place that turns REDIS_URL into fred clients, so the Redis bus,
//! presence and rate-limit drivers share connections and policies.

use std::time::Duration;

use fred::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisConnectError(pub String);

/// A command client (fred pipelines concurrent commands on its connection)
/// and a subscriber client.
#[derive(Clone)]
pub struct RedisClients {
    pub commands: Client,
    pub subscriber: fred::clients::SubscriberClient,
}

/// Pub/sub messages buffered between fred's subscriber and the bus task.
pub const SUBSCRIBER_BUFFER: usize = 64 * 1024;

/// Commands fail after this instead of queueing forever while Redis is down.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn connect(url: &str) -> Result<RedisClients, RedisConnectError> {
    let config = Config::from_url(url).map_err(|e| RedisConnectError(e.to_string()))?;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
            // The subscriber hands pub/sub messages to the bus task through
            // a broadcast channel; fred's default (32) overflowed within
            // milliseconds under load ("lagged", live events dropped).
            p.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
        })
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(3);
            c.max_command_attempts = 2;
        })
        // Reconnect forever, 100 ms doubling up to 2 s: Redis restarts are
        // routine and every instance must come back by itself.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    let commands = builder.build().map_err(|e| RedisConnectError(e.to_string()))?;
    let subscriber = builder.build_subscriber_client().map_err(|e| RedisConnectError(e.to_string()))?;
    commands.init().await.map_err(|e| RedisConnectError(e.to_string()))?;
    subscriber.init().await.map_err(|e| RedisConnectError(e.to_string()))?;
    // Re-subscribe to every tracked channel after a reconnect.
    subscriber.manage_subscriptions();
    Ok(RedisClients { commands, subscriber })
}

/// Redis calls on the send path (rate limit, send claim) give up after
/// this: a send must not wait out a reconnect. They fail open.
pub const HOT_PATH_TIMEOUT: Duration = Duration::from_millis(250);

/// Options for commands on the send path: fail at once while the
/// connection is down, and after [`HOT_PATH_TIMEOUT`] otherwise.
pub fn hot_path_options() -> fred::types::config::Options {
    fred::types::config::Options {
        timeout: Some(HOT_PATH_TIMEOUT),
        fail_fast: true,
        max_attempts: Some(1),
        ..Default::default()
    }
}
