//! Giving freed memory back to the operating system when a worker goes quiet.
//!
//! An allocator keeps pages it has freed for reuse and returns them to the OS lazily, on
//! later allocator calls. A worker whose connections have just closed or gone idle
//! (parked, see [`crate::lifetime`]) makes no further calls, so the memory of the burst
//! would stay resident for as long as the worker stays quiet: with 10,000 idle
//! keep-alive connections, about 6 KiB per connection of freed TLS and HTTP buffers.
//!
//! Each worker therefore runs [`release_when_quiet`]: once memory was released on its
//! thread ([`note_release`]: a connection ended or parked) and no more was released for a
//! [`QUIET`] period (and the last call is [`MIN_SPACING`] old), it calls the process's release hook once ([`set_release_hook`]: the
//! binary installs mimalloc's `mi_collect(true)`, or glibc's `malloc_trim(0)` with the
//! system allocator). A busy worker never calls it: the allocator's own purging runs on its
//! allocation path.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a worker must have released nothing before its freed memory is returned.
pub const QUIET: Duration = Duration::from_millis(250);

/// Least time between two calls of the release hook on one worker (a call visits the
/// worker's whole heap: about 4 ms with 10,000 connections held), so a trickle of
/// connections parking or closing at quiet intervals costs at most one call a second.
pub const MIN_SPACING: Duration = Duration::from_secs(1);

static HOOK: OnceLock<fn()> = OnceLock::new();

thread_local! {
    /// Releases (connections ended or parked) on this thread so far.
    static RELEASES: Cell<u64> = const { Cell::new(0) };
}

/// Installs the function that returns the calling thread's freed memory to the OS (once
/// per process; later calls are ignored). Without a hook, [`release_when_quiet`] does
/// nothing.
pub fn set_release_hook(hook: fn()) {
    let _ = HOOK.set(hook);
}

/// Notes that the current thread released the memory of a connection (it ended, or parked
/// its HTTP state).
pub(crate) fn note_release() {
    RELEASES.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Runs on a worker's (single-threaded) runtime until `shutdown`: calls the release hook
/// once after each burst of releases, when [`QUIET`] passed without another one (and
/// [`MIN_SPACING`] since the last call).
pub(crate) async fn release_when_quiet(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(&hook) = HOOK.get() else { return };
    let mut tick = tokio::time::interval(QUIET);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = RELEASES.with(Cell::get);
    let mut dirty = false;
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let now = RELEASES.with(Cell::get);
        if now != seen {
            seen = now;
            dirty = true;
        } else if dirty && last.is_none_or(|t| t.elapsed() >= MIN_SPACING) {
            dirty = false;
            let t0 = tokio::time::Instant::now();
            last = Some(t0);
            hook();
            tracing::debug!(
                micros = t0.elapsed().as_micros() as u64,
                "freed memory returned to the OS"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Hook calls on this thread (other tests' workers run on other threads).
        static CALLS: Cell<usize> = const { Cell::new(0) };
    }

    fn count() {
        CALLS.with(|c| c.set(c.get() + 1));
    }

    fn calls() -> usize {
        CALLS.with(Cell::get)
    }

    /// The hook runs once per burst, only after a quiet period, and never without releases.
    #[tokio::test(start_paused = true)]
    async fn hook_runs_once_after_a_quiet_burst() {
        set_release_hook(count);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(release_when_quiet(rx));
        tokio::time::sleep(QUIET * 4).await;
        assert_eq!(calls(), 0, "nothing released, nothing returned");
        // A burst spread over several ticks: no call while it lasts.
        for _ in 0..3 {
            note_release();
            tokio::time::sleep(QUIET).await;
        }
        assert_eq!(calls(), 0, "no call while releases continue");
        tokio::time::sleep(QUIET * 3).await;
        assert_eq!(calls(), 1, "one call after the burst");
        tokio::time::sleep(QUIET * 4).await;
        assert_eq!(calls(), 1, "quiet worker: no repeated calls");
        // Releases at quiet intervals: at most one call per MIN_SPACING.
        let start = tokio::time::Instant::now();
        while start.elapsed() < MIN_SPACING * 4 {
            note_release();
            tokio::time::sleep(QUIET * 2).await;
        }
        let spaced = calls() - 1;
        assert!(
            (3..=5).contains(&spaced),
            "{spaced} calls in 4 x MIN_SPACING"
        );
        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
