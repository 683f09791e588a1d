//! Housekeeping loops: presence heartbeats and sweeps, the revocation purge.

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

/// Runs `tick` every `period`, one run at a time (a slow run delays the
/// next rather than overlapping it), until `shutdown`.
pub async fn every<F, Fut>(period: Duration, shutdown: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => tick().await,
        }
    }
}
