//! Single-flight: concurrent requests for the same key share one background task.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

type FlightMap<T> = Arc<Mutex<HashMap<Box<[u8]>, watch::Receiver<Option<T>>>>>;

/// In-flight tasks by key. The lock is taken only on cache misses, for a map operation.
#[derive(Debug)]
pub(crate) struct SingleFlight<T> {
    map: FlightMap<T>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Joins the task for `key`, or starts `start()` on `bg`. Returns the receiver and whether
    /// this call started the task.
    ///
    /// `recheck` runs under the lock when no task is in flight: a task stores its result
    /// before it leaves the map, so a result that landed since the caller's cache miss is
    /// found there instead of starting a second fetch.
    pub(super) fn join_or_start<F, Fut, R>(
        &self,
        bg: &Handle,
        key: &[u8],
        recheck: R,
        start: F,
    ) -> (watch::Receiver<Option<T>>, bool)
    where
        R: FnOnce() -> Option<T>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut m = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = m.get(key) {
            return (rx.clone(), false);
        }
        if let Some(v) = recheck() {
            let (_tx, rx) = watch::channel(Some(v));
            return (rx, false);
        }
        let (tx, rx) = watch::channel(None);
        let key: Box<[u8]> = key.into();
        m.insert(key.clone(), rx.clone());
        drop(m);
        let map = self.map.clone();
        let fut = start();
        bg.spawn(async move {
            let v = fut.await;
            map.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            let _ = tx.send(Some(v));
        });
        (rx, true)
    }
}

/// Waits for a flight's result up to `deadline`; `None` on timeout or if the task died.
pub(crate) async fn wait<T: Clone>(
    mut rx: watch::Receiver<Option<T>>,
    deadline: Duration,
) -> Option<T> {
    match tokio::time::timeout(deadline, rx.wait_for(Option::is_some)).await {
        Ok(Ok(v)) => v.clone(),
        _ => None,
    }
}
