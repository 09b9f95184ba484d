//! Where decryption runs: on tokio's blocking threads, never on the async workers that
//! answer `/healthz`, watches and leader election, and at most as many at once as there
//! are cores. Every input is bounded before it gets here (`kseal_core::age_header`), so
//! one job costs milliseconds; the limit keeps many of them from starving the rest.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The decryption pool.
pub struct Crypto {
    permits: Arc<Semaphore>,
}

/// No decryption slot was free (the HTTP services answer 503 rather than queue).
#[derive(Debug, thiserror::Error)]
#[error("busy: every decryption slot is in use; retry shortly")]
pub struct Busy;

impl Default for Crypto {
    fn default() -> Self {
        Crypto::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

impl Crypto {
    pub fn new(slots: usize) -> Self {
        Crypto {
            permits: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// Runs `job` on a blocking thread once a slot is free.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> T {
        // The semaphore is never closed, so acquiring only waits.
        let permit = self.permits.clone().acquire_owned().await;
        Self::spawn(permit.ok(), job).await
    }

    /// Runs `job` on a blocking thread if a slot is free now.
    pub async fn try_run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| Busy)?;
        Ok(Self::spawn(Some(permit), job).await)
    }

    async fn spawn<T: Send + 'static>(
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        });
        match task.await {
            Ok(v) => v,
            // A panic in the job is a bug; carry it to the caller's task as it was.
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only when the runtime shuts down, and nobody waits then.
                Err(_) => std::future::pending().await,
            },
        }
    }
}
