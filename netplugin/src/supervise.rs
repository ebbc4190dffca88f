//! The agent's background tasks, watched: a task that panics or returns is logged and started
//! again after a pause (with backoff), so that reaping, refilling or following the cluster
//! never stops silently. A task that is done on purpose returns `Ok(Done)`.

use std::future::Future;
use std::time::Duration;

/// How a supervised task ended.
pub enum Exit {
    /// For good: do not start it again.
    Done,
    /// Start it again after the pause.
    Restart,
}

/// Runs `make()`'s task under supervision, as `name`, until it ends with [`Exit::Done`]: a
/// panic or an [`Exit::Restart`] logs an error and starts a new one, after a pause that doubles
/// from 100 ms up to 30 s (reset after a run of a minute or more).
pub fn spawn<F, Fut>(name: &'static str, mut make: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Exit> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            match tokio::spawn(make()).await {
                Ok(Exit::Done) => return,
                Ok(Exit::Restart) => {
                    tracing::error!(task = name, "background task stopped: restarting it")
                }
                Err(e) if e.is_panic() => {
                    tracing::error!(task = name, error = %e, "background task panicked: restarting it")
                }
                Err(e) => {
                    tracing::error!(task = name, error = %e, "background task cancelled");
                    return;
                }
            }
            if started.elapsed() >= Duration::from_secs(60) {
                pause = Duration::from_millis(100);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    })
}

/// A task that is meant to run forever: if it ever returns, it is restarted.
pub fn forever<F, Fut>(name: &'static str, mut make: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    spawn(name, move || {
        let f = make();
        async move {
            f.await;
            Exit::Restart
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_restarted_until_done() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let h = spawn("test", move || {
            let r = r.clone();
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    panic!("run {n} fails");
                }
                Exit::Done
            }
        });
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("supervisor ends once the task is done")
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
