//! [`DirLock`]: one process at a time per database directory.
//!
//! The lock is an exclusive `flock` on the file `LOCK` inside the directory, taken without
//! waiting. `flock` locks belong to the open file description, so the lock is released when the
//! [`DirLock`] is dropped (its descriptor closes) or the process dies, and a second
//! [`DirLock::acquire`] of the same directory fails even inside the same process.
//!
//! A process that starts another one (`fork` or `posix_spawn`, then `exec`) shares its open
//! descriptors with the child until the child's `exec` closes them (they are `O_CLOEXEC`): for
//! that moment the child holds the lock too, even after the parent closed its database. So a
//! busy lock is tried again for up to [`LOCK_RETRY`] before it is reported; a lock held by
//! another live handle is still refused, only that much later.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::storage::flock_exclusive_now;

/// The name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// How long a busy lock is tried again before [`DirLock::acquire`] reports it: longer than a
/// spawned child takes to `exec` on a loaded machine, short enough to go unnoticed by a person.
pub const LOCK_RETRY: Duration = Duration::from_millis(200);

/// An exclusive lock on a database directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    /// The open `LOCK` file carrying the `flock`; closing it releases the lock.
    #[expect(dead_code, reason = "held only so that dropping it releases the lock")]
    fd: OwnedFd,
}

impl DirLock {
    /// Locks `dir` for this process, creating `dir/LOCK` if needed. A busy lock is tried again
    /// for up to [`LOCK_RETRY`] (see the module's docs), never longer.
    ///
    /// If another holder has the lock, the error's kind is [`io::ErrorKind::WouldBlock`] and its
    /// message is `database is locked: <dir> is in use by another process`.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(dir.join(LOCK_FILE_NAME))?;
        let fd = OwnedFd::from(file);
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match flock_exclusive_now(fd.as_fd()) {
                Ok(()) => return Ok(DirLock { fd }),
                // EWOULDBLOCK (== EAGAIN on Linux): someone else holds the lock, maybe a child
                // between its spawn and its exec.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && started.elapsed() < LOCK_RETRY => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("database is locked: {} is in use by another process", dir.display()),
                    ))
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn lock_creates_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = DirLock::acquire(dir.path()).unwrap();
        assert!(dir.path().join(LOCK_FILE_NAME).is_file());
    }

    #[test]
    fn second_lock_on_same_directory_fails_with_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let _first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            err.to_string(),
            format!("database is locked: {} is in use by another process", dir.path().display())
        );
    }

    #[test]
    fn a_lock_released_while_a_second_acquire_retries_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().to_owned();
        let second = std::thread::spawn(move || DirLock::acquire(&path));
        std::thread::sleep(LOCK_RETRY / 4);
        drop(first);
        assert!(second.join().unwrap().is_ok(), "released within the retry window: taken");
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        drop(first);
        let _second = DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn locks_on_different_directories_are_independent() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let _a = DirLock::acquire(a.path()).unwrap();
        let _b = DirLock::acquire(b.path()).unwrap();
    }

    #[test]
    fn acquire_in_missing_directory_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let err = DirLock::acquire(&root.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
