//! In-process presence: a session count per user.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;

use super::{Presence, PresenceError};

#[derive(Default)]
pub struct LocalPresence {
    sessions: Mutex<HashMap<String, usize>>,
}

impl LocalPresence {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Presence for LocalPresence {
    async fn session_opened(&self, user_id: &str) -> Result<bool, PresenceError> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user_id.to_string()).or_insert(0);
        *n += 1;
        Ok(*n == 1)
    }

    async fn session_closed(&self, user_id: &str) -> Result<bool, PresenceError> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(user_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Ok(false)
            }
            Some(_) => {
                map.remove(user_id);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn online_among(&self, user_ids: &[String]) -> Result<HashSet<String>, PresenceError> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        Ok(user_ids.iter().filter(|id| map.contains_key(id.as_str())).cloned().collect())
    }

    async fn is_online(&self, user_id: &str) -> Result<bool, PresenceError> {
        Ok(self.sessions.lock().unwrap_or_else(|p| p.into_inner()).contains_key(user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_tabs_count_once() {
        let p = LocalPresence::new();
        assert!(p.session_opened("a").await.unwrap());
        assert!(!p.session_opened("a").await.unwrap());
        assert!(!p.session_closed("a").await.unwrap());
        let ids = ["a".to_string(), "b".to_string()];
        assert_eq!(p.online_among(&ids).await.unwrap(), HashSet::from(["a".to_string()]));
        assert!(p.is_online("a").await.unwrap());
        assert!(p.session_closed("a").await.unwrap());
        assert!(p.online_among(&ids).await.unwrap().is_empty());
        assert!(!p.is_online("a").await.unwrap());
    }
}
