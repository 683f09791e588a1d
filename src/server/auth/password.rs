//! Password hashing: argon2id with the library defaults, which are OWASP's
//! recommendation (19 MiB, 2 passes, 1 lane).
//!
//! Each hash is tens of milliseconds of CPU and 19 MiB of memory. On an
//! unbounded blocking pool a burst of sign-ups ran hundreds at once (1.18 GB
//! RSS after 1,000 sign-ups, never returned). So hashing runs on a fixed set
//! of threads, one per core, each reusing one preallocated block buffer:
//! memory is bounded by `threads × 19 MiB` whatever the load. Requests wait in
//! a bounded queue; when it is full the caller gets [`PasswordError::Busy`]
//! (answered 503 with `Retry-After`) at once instead of piling up.

use std::sync::{Arc, Mutex, mpsc};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{Output, PasswordHash, SaltString, rand_core::OsRng},
};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Every hashing thread is busy and the wait queue is full.
    #[error("password hashing queue full")]
    Busy,
}

/// Seconds a caller turned away with [`PasswordError::Busy`] is told to wait:
/// a full queue drains in about `queue × 40 ms / threads`, well under this.
pub const BUSY_RETRY_AFTER_SECS: u64 = 2;

enum Job {
    Hash { password: String, done: oneshot::Sender<Result<String, PasswordError>> },
    Verify { stored: String, password: String, done: oneshot::Sender<bool> },
}

/// The hashing threads and their bounded queue. Dropping the last handle
/// closes the queue; each thread finishes its job and exits.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::SyncSender<Job>,
}

impl PasswordHasher {
    /// `threads` hashing threads (at least one) and room for `queue` waiting
    /// requests.
    pub fn new(threads: usize, queue: usize) -> Result<Self, PasswordError> {
        let (jobs, incoming) = mpsc::sync_channel(queue);
        let incoming = Arc::new(Mutex::new(incoming));
        for n in 0..threads.max(1) {
            let incoming = incoming.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || run_worker(&incoming))
                .map_err(|e| PasswordError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// One thread per core, and a queue of 32 requests per thread.
    pub fn for_this_machine() -> Result<Self, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, 32 * cores)
    }

    fn submit(&self, job: Job) -> Result<(), PasswordError> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                crate::server::metrics::inc(&crate::server::metrics::METRICS.password_busy);
                PasswordError::Busy
            }
            mpsc::TrySendError::Disconnected(_) => PasswordError::Hash("hashing threads stopped".into()),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let (done, result) = oneshot::channel();
        self.submit(Job::Hash { password, done })?;
        result.await.map_err(|_| PasswordError::Hash("hashing thread gone".into()))?
    }

    /// True when `password` matches `stored`. A malformed stored hash is a
    /// mismatch, not an error a caller could turn into a different response.
    pub async fn verify(&self, stored: String, password: String) -> Result<bool, PasswordError> {
        let (done, result) = oneshot::channel();
        self.submit(Job::Verify { stored, password, done })?;
        Ok(result.await.unwrap_or(false))
    }
}

fn run_worker(incoming: &Mutex<mpsc::Receiver<Job>>) {
    // Allocated once per thread, reused by every hash it computes.
    let mut memory = vec![Block::new(); Params::DEFAULT.block_count()];
    loop {
        // The lock is held only while waiting for the next job.
        let job = match incoming.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Hash { password, done }) => {
                let _ = done.send(hash_with(&mut memory, &password));
            }
            Ok(Job::Verify { stored, password, done }) => {
                let _ = done.send(verify_with(&mut memory, &stored, &password));
            }
            Err(_) => return,
        }
    }
}

fn hash_with(memory: &mut [Block], password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::DEFAULT;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, memory)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e: argon2::password_hash::Error| PasswordError::Hash(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| PasswordError::Hash(e.to_string()))?),
    };
    Ok(hash.to_string())
}

fn verify_with(memory: &mut Vec<Block>, stored: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) =
        (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or_default();
    // A hash made with more memory than today's default (an older or a
    // stronger setting) still verifies; the buffer grows once for it.
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::new());
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, &mut memory[..]).is_err() {
        return false;
    }
    // Output's equality is constant time.
    Output::new(&out).is_ok_and(|actual| actual == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[tokio::test]
    async fn hashes_verify_and_match_the_library() {
        let hasher = PasswordHasher::new(1, 4).expect("hasher");
        let hash = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify(hash.clone(), "correct horse".into()).await.expect("verify"));
        assert!(!hasher.verify(hash.clone(), "wrong".into()).await.expect("verify"));
        assert!(!hasher.verify("not a hash".into(), "x".into()).await.expect("verify"));
        // The library's own verifier accepts our hash, and we accept its.
        let parsed = PasswordHash::new(&hash).expect("phc");
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        let theirs = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::default(),
            b"pw",
            &SaltString::generate(&mut OsRng),
        )
        .expect("hash")
        .to_string();
        assert!(hasher.verify(theirs, "pw".into()).await.expect("verify"));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = PasswordHasher::new(1, 1).expect("hasher");
        let attempts: Vec<_> = (0..8).map(|i| hasher.hash(format!("pw{i}"))).collect();
        let results = futures_util::future::join_all(attempts).await;
        let busy = results.iter().filter(|r| matches!(r, Err(PasswordError::Busy))).count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(busy >= 1, "a queue of one cannot take eight at once");
        assert!(ok >= 1, "the first request is hashed");
        assert_eq!(busy + ok, 8);
    }
}
