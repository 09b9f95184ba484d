//! Where decryption runs: on tokio's blocking threads, never on the async workers that
//! answer `/healthz`, watches and leader election, and at most as many at once as there
//! are cores. Every input is bounded before it gets here (`kseal_core::age_header`,
//! `kseal_core::limits`); the limit keeps many jobs from starving the rest.
//!
//! Answers to requests (verify, reseal, migrate: anyone with the requester role can ask)
//! take at most half the slots, so they never hold every core: a SealedSecret to unseal
//! always finds a slot a request cannot take.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The decryption pool.
pub struct Crypto {
    permits: Arc<Semaphore>,
    /// Of those, the slots requests may hold.
    requests: Arc<Semaphore>,
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
        let slots = slots.max(1);
        Crypto {
            permits: Arc::new(Semaphore::new(slots)),
            requests: Arc::new(Semaphore::new((slots / 2).max(1))),
        }
    }

    /// Runs a request's `job` once one of the requests' slots, then a slot, is free.
    pub async fn run_request<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let request = self.requests.clone().acquire_owned().await.ok();
        let result = self.run(job).await;
        drop(request);
        result
    }

    /// Runs a request's `job` if one of the requests' slots, and a slot, is free now.
    pub async fn try_run_request<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let request = self
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let result = self.try_run(job).await;
        drop(request);
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests flooding the pool hold half of it at most: the next request is turned
    /// away, and unsealing still gets a slot at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_never_hold_every_slot() {
        let crypto = Arc::new(Crypto::new(2));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let busy = {
            let (crypto, hold) = (crypto.clone(), hold.clone());
            tokio::spawn(async move {
                crypto
                    .run_request(move || {
                        let _ = started_tx.send(());
                        let _ = hold.lock().map(|h| h.recv());
                    })
                    .await
            })
        };
        started.recv().await.unwrap();
        assert!(
            crypto.try_run_request(|| ()).await.is_err(),
            "the requests' slot is held"
        );
        let unsealed = tokio::time::timeout(std::time::Duration::from_secs(10), crypto.run(|| 7))
            .await
            .expect("unsealing found a slot");
        assert_eq!(unsealed, 7);
        release.send(()).unwrap();
        busy.await.unwrap();
        assert!(crypto.try_run_request(|| ()).await.is_ok(), "free again");
    }
}
