#![cfg(feature = "ssr")]
//! The order of a user's session openings and closings, as the bus sees it.
//! A last tab closing while a new one opens must leave the user subscribed:
//! the bus calls that follow the hub are network round trips (Redis), so the
//! gateway serialises them per user instead of racing them.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use charcha::server::bus::{Audience, Bus, BusError};
use common::{TestServer, TestUser, Ws};
use tokio::sync::Notify;

/// A bus that records which users it is subscribed to, and whose
/// unsubscribe is slow (like a Redis round trip under load).
struct SlowUnsubscribeBus {
    inner: Arc<dyn Bus>,
    subscribed: Mutex<Vec<String>>,
    unsubscribe_started: Notify,
}

impl SlowUnsubscribeBus {
    fn is_subscribed(&self, user: &str) -> bool {
        self.subscribed.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|u| u == user)
    }
}

#[async_trait]
impl Bus for SlowUnsubscribeBus {
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError> {
        self.inner.publish(audience, frame).await
    }

    async fn subscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.subscribed.lock().unwrap_or_else(|p| p.into_inner()).push(user_id.to_string());
        self.inner.subscribe(user_id).await
    }

    async fn unsubscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.unsubscribe_started.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.subscribed.lock().unwrap_or_else(|p| p.into_inner()).retain(|u| u != user_id);
        self.inner.unsubscribe(user_id).await
    }
}

#[tokio::test]
async fn a_tab_opening_while_the_last_one_closes_stays_subscribed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = common::test_config(tmp.path().to_path_buf());
    let mut drivers = charcha::server::connect_drivers(&config).await.expect("drivers");
    let bus = Arc::new(SlowUnsubscribeBus {
        inner: drivers.bus.clone(),
        subscribed: Mutex::new(Vec::new()),
        unsubscribe_started: Notify::new(),
    });
    drivers.bus = bus.clone();
    let server = TestServer::start_config(config, Some(drivers)).await;
    let ann = TestUser::signup(&server, "Ann").await;

    let first_tab = ann.ws(&server).await;
    assert!(bus.is_subscribed(&ann.id), "subscribed while the first tab is open");

    // The last tab goes; while its unsubscribe is in flight, a new tab opens.
    drop(first_tab);
    tokio::time::timeout(Duration::from_secs(5), bus.unsubscribe_started.notified())
        .await
        .expect("the closing tab unsubscribes");
    let _second_tab = Ws::connect(&server, &ann.token).await;

    // Whatever the interleaving, the user ends up subscribed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(bus.is_subscribed(&ann.id), "a connected user must stay subscribed to the bus");
    assert_eq!(server.state().hub.local_users(), vec![ann.id.clone()]);
}
