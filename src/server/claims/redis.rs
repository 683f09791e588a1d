//! Send claims in Redis: `SET <prefix>:send:<sender>:<client id> <message>
//! NX GET PX <ttl>` — one round trip that both claims and, for a retry,
//! returns the first attempt (needs Redis ≥ 7). Fails fast while Redis is
//! unreachable so sends keep flowing (see the port's docs for why that is
//! safe).

use async_trait::async_trait;
use fred::{
    prelude::*,
    types::{Expiration, SetOptions},
};

use super::{CLAIM_TTL, ClaimError, SendClaims};
use crate::server::redis_conn::hot_path_options;

pub struct RedisClaims {
    redis: Client,
    prefix: String,
}

impl RedisClaims {
    pub fn new(redis: Client, prefix: &str) -> Self {
        Self { redis, prefix: format!("{prefix}:send:") }
    }
}

#[async_trait]
impl SendClaims for RedisClaims {
    async fn claim(&self, sender_id: &str, client_msg_id: &str, payload: &str) -> Result<Option<String>, ClaimError> {
        if !self.redis.is_connected() {
            return Err(ClaimError::Unavailable("redis is not connected".into()));
        }
        let key = format!("{}{sender_id}:{client_msg_id}", self.prefix);
        self.redis
            .with_options(&hot_path_options())
            .set::<Option<String>, _, _>(
                key,
                payload,
                Some(Expiration::PX(CLAIM_TTL.as_millis() as i64)),
                Some(SetOptions::NX),
                true,
            )
            .await
            .map_err(|e| ClaimError::Unavailable(e.to_string()))
    }
}
