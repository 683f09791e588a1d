//! Session tokens: HS256 JWTs with `sub`, `iat`, `exp` and a random `jti`
//! (the handle a logout revokes). The algorithm is pinned on decode, so a
//! token claiming `alg: none` or RS256 is rejected outright.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

/// Clock skew tolerated on `iat`, seconds: a token is never accepted from
/// further in the future than this. `exp` gets no grace at all.
const IAT_SKEW_SECS: i64 = 5;

impl TokenService {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: &str) -> Result<(String, Claims), TokenError> {
        let now = crate::server::clock::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: ulid::Ulid::new().to_string(),
        };
        self.sign(&claims).map(|t| (t, claims))
    }

    /// Signs arbitrary claims; used by `issue` and by tests forging tokens.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Checks the signature and the times: not expired, not issued in the
    /// future, and not living longer than this server issues tokens for (a
    /// token signed with a leaked key and `exp` in the year 3000 is refused).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims =
            decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        let now = crate::server::clock::now_ms() / 1000;
        let lifetime = claims.exp.checked_sub(claims.iat).ok_or(TokenError::Invalid)?;
        let max_lifetime = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        if claims.iat > now.saturating_add(IAT_SKEW_SECS) || lifetime <= 0 || lifetime > max_lifetime {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> TokenService {
        TokenService::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(3600))
    }

    #[test]
    fn round_trip() {
        let s = svc();
        let (t, c) = s.issue("u1").unwrap();
        assert_eq!(s.verify(&t).unwrap(), c);
    }

    #[test]
    fn expired_tampered_none_and_foreign_are_rejected() {
        let s = svc();
        let now = crate::server::clock::now_ms() / 1000;
        let old = Claims { sub: "u1".into(), iat: now - 7200, exp: now - 3600, jti: "j".into() };
        assert!(matches!(s.verify(&s.sign(&old).unwrap()), Err(TokenError::Expired)));

        let (t, _) = s.issue("u1").unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        // Swap the payload for another user's, keep the signature.
        let (other, _) = s.issue("u2").unwrap();
        parts[1] = other.split('.').nth(1).unwrap().to_string();
        assert!(matches!(s.verify(&parts.join(".")), Err(TokenError::Invalid)));

        // alg: none with an empty signature.
        use base64_url as b64;
        let header = b64::encode(br#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{header}.{}.", t.split('.').nth(1).unwrap());
        assert!(matches!(s.verify(&none), Err(TokenError::Invalid)));

        // Issued in the future, or living longer than this server issues.
        let future = Claims { sub: "u1".into(), iat: now + 600, exp: now + 1200, jti: "j".into() };
        assert!(matches!(s.verify(&s.sign(&future).unwrap()), Err(TokenError::Invalid)));
        let forever = Claims { sub: "u1".into(), iat: now, exp: i64::MAX, jti: "j".into() };
        assert!(matches!(s.verify(&s.sign(&forever).unwrap()), Err(TokenError::Invalid)));
        let backwards = Claims { sub: "u1".into(), iat: now + 3, exp: now + 2, jti: "j".into() };
        assert!(matches!(s.verify(&s.sign(&backwards).unwrap()), Err(TokenError::Invalid)));
        // No grace after `exp`.
        let just_expired = Claims { sub: "u1".into(), iat: now - 60, exp: now - 1, jti: "j".into() };
        assert!(matches!(s.verify(&s.sign(&just_expired).unwrap()), Err(TokenError::Expired)));

        let foreign = TokenService::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        let (ft, _) = foreign.issue("u1").unwrap();
        assert!(matches!(s.verify(&ft), Err(TokenError::Invalid)));
        assert!(matches!(s.verify("garbage"), Err(TokenError::Invalid)));
    }

    /// Minimal unpadded base64url, enough to forge a header in a test.
    mod base64_url {
        pub fn encode(input: &[u8]) -> String {
            const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..=chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
