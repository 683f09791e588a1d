//! In-process bus: one instance, so publishing is delivering to the hub.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Audience, Bus, BusError};
use crate::server::hub::Hub;

pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError> {
        self.hub.deliver(&audience, frame);
        Ok(())
    }

    async fn subscribe(&self, _user_id: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn unsubscribe(&self, _user_id: &str) -> Result<(), BusError> {
        Ok(())
    }
}
