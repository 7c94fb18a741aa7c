//! Keeping fault tests apart from each other and from load tests.
//!
//! Two cores cannot run several clusters and fault drills at once without starving a node past its
//! node timeout, which triggers failovers no test asked for. Fault tests hold [`exclusive`]; tests that
//! only read and write hold [`shared`]. The lock is an advisory file lock (`flock`) in the temporary
//! directory, so it also orders separate test processes (doctests, nextest). Never take `exclusive`
//! while holding `shared` in the same test: that waits forever.

use std::fs::File;
use std::path::PathBuf;

use crate::Error;

/// Held while a test runs; dropping it releases the lock.
#[derive(Debug)]
pub struct TestLock {
    _file: File,
}

fn lock_path() -> PathBuf {
    std::env::temp_dir().join("local-cluster-tests.lock")
}

async fn take(exclusive: bool) -> Result<TestLock, Error> {
    let path = lock_path();
    let task = tokio::task::spawn_blocking(move || {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(TestLock { _file: file })
    });
    task.await
        .map_err(|e| Error::Invalid(format!("lock task failed: {e}")))?
}

/// Waits until no other test holds the lock, then holds it alone. For tests that kill, pause, fail
/// over or reshard nodes.
pub async fn exclusive() -> Result<TestLock, Error> {
    take(true).await
}

/// Waits until no fault test runs; many `shared` holders run together.
pub async fn shared() -> Result<TestLock, Error> {
    take(false).await
}
