//! In-memory send claims for one instance, bounded: the oldest half is
//! dropped when full (history's unique key still prevents double storage).

use std::{collections::HashMap, sync::Mutex, time::Instant};

use async_trait::async_trait;

use super::{CLAIM_TTL, ClaimError, SendClaims};

const MAX_CLAIMS: usize = 200_000;

#[derive(Default)]
pub struct LocalClaims {
    claims: Mutex<HashMap<(String, String), (Instant, String)>>,
}

impl LocalClaims {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SendClaims for LocalClaims {
    async fn claim(&self, sender_id: &str, client_msg_id: &str, payload: &str) -> Result<Option<String>, ClaimError> {
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.len() >= MAX_CLAIMS {
            claims.retain(|_, (at, _)| now.duration_since(*at) < CLAIM_TTL / 2);
            if claims.len() >= MAX_CLAIMS {
                claims.clear();
            }
        }
        let key = (sender_id.to_string(), client_msg_id.to_string());
        match claims.get(&key) {
            Some((at, first)) if now.duration_since(*at) < CLAIM_TTL => Ok(Some(first.clone())),
            _ => {
                claims.insert(key, (now, payload.to_string()));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_claim_returns_the_first() {
        let c = LocalClaims::new();
        assert_eq!(c.claim("a", "1", "first").await.unwrap(), None);
        assert_eq!(c.claim("a", "1", "second").await.unwrap(), Some("first".into()));
        assert_eq!(c.claim("b", "1", "other").await.unwrap(), None);
    }
}
