//! The state directory: `tpm-state.bin` (the engine's versioned state blob), replaced atomically,
//! and a lock file so that two servers never share one state.
//!
//! Durability before acknowledgement (DESIGN §3): [`StateDir::store`] returns only once the new
//! file is on disk under its final name: temp file in the same directory, write, `fdatasync`,
//! `rename` over the old file, `fsync` of the directory. A crash at any point leaves either the old
//! or the new state, never a mix; the leftover temp file is removed at the next start.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The state file inside the directory.
pub const STATE_FILE: &str = "tpm-state.bin";
/// The lock file (held with `flock` for the server's life).
pub const LOCK_FILE: &str = ".ukvtpm.lock";
/// The temp file a new state is written to before it is renamed over [`STATE_FILE`].
const TEMP_FILE: &str = ".tpm-state.bin.tmp";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create the state directory {path}: {error}")]
    Create { path: PathBuf, error: io::Error },
    #[error("the state directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("the state directory {path} is not writable: {error}")]
    NotWritable { path: PathBuf, error: io::Error },
    #[error(
        "the state directory {path} is in use by another ukvtpm server (lock {lock} is held); \
         stop that server or use another --state directory"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock {lock}: {error}")]
    Lock { lock: PathBuf, error: io::Error },
    #[error("cannot read the state file {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
}

/// A locked, writable state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Open handle on the directory, for `fsync` after a rename.
    dir_handle: File,
    /// Held (flock) until the server exits.
    _lock: File,
    /// While starting up, nothing has been acknowledged to anyone yet: the newest state is kept
    /// here and written once, durably, by [`StateDir::end_deferral`].
    deferred: Option<Option<Vec<u8>>>,
}

impl StateDir {
    /// Creates `dir` if needed, locks it and checks that it is writable.
    ///
    /// # Errors
    /// See [`StateDirError`]: each variant names the path and what to do.
    pub fn open(dir: &Path) -> Result<Self, StateDirError> {
        fs::create_dir_all(dir).map_err(|error| StateDirError::Create {
            path: dir.to_owned(),
            error,
        })?;
        if !dir.is_dir() {
            return Err(StateDirError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let not_writable = |error| StateDirError::NotWritable {
            path: dir.to_owned(),
            error,
        };
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(not_writable)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateDirError::Locked {
                    path: dir.to_owned(),
                    lock: lock_path,
                });
            }
            Err(TryLockError::Error(error)) => {
                return Err(StateDirError::Lock {
                    lock: lock_path,
                    error,
                });
            }
        }
        // The lock file may have existed already: prove that new files can be made.
        let probe = dir.join(format!(".ukvtpm-probe-{}", std::process::id()));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"probe"))
            .and_then(|()| fs::remove_file(&probe))
            .map_err(not_writable)?;
        let dir_handle = File::open(dir).map_err(not_writable)?;
        match fs::remove_file(dir.join(TEMP_FILE)) {
            Ok(()) => tracing::info!("removed a temp file left by an interrupted state write"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(not_writable(e)),
        }
        Ok(StateDir {
            dir: dir.to_owned(),
            dir_handle,
            _lock: lock,
            deferred: None,
        })
    }

    /// Path of the state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The stored state, or `None` if there is no state file yet.
    ///
    /// # Errors
    /// [`StateDirError::Read`] if the file exists but cannot be read.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StateDirError> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StateDirError::Read { path, error }),
        }
    }

    /// From now until [`StateDir::end_deferral`], [`StateDir::store`] only remembers the newest
    /// state (start-up: manufacture and `TPM2_Startup` cost one durable write, not two).
    pub fn defer(&mut self) {
        self.deferred = Some(None);
    }

    /// Durably writes the state stored since [`StateDir::defer`], if any; stores are immediate
    /// again afterwards. Must be called before any response leaves the server.
    ///
    /// # Errors
    /// Any I/O error; the old state file is then still in place.
    pub fn end_deferral(&mut self) -> io::Result<()> {
        match self.deferred.take() {
            Some(Some(state)) => self.store(&state),
            _ => Ok(()),
        }
    }

    /// Atomically replaces the state file with `state` and waits until it is durable.
    ///
    /// # Errors
    /// Any I/O error; the old state file is then still in place.
    pub fn store(&mut self, state: &[u8]) -> io::Result<()> {
        if let Some(pending) = self.deferred.as_mut() {
            *pending = Some(state.to_vec());
            return Ok(());
        }
        let tmp = self.dir.join(TEMP_FILE);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(state)?;
            f.sync_data()?;
            drop(f);
            fs::rename(&tmp, self.state_path())?;
            self.dir_handle.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("new");
        let mut s = StateDir::open(&dir)?;
        assert_eq!(s.load()?, None);
        s.store(b"one")?;
        s.store(b"two")?;
        assert_eq!(s.load()?.as_deref(), Some(&b"two"[..]));
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [LOCK_FILE, STATE_FILE]);
        Ok(())
    }

    #[test]
    fn deferred_stores_are_written_once_at_the_end() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut s = StateDir::open(tmp.path())?;
        s.store(b"old")?;
        s.defer();
        s.store(b"one")?;
        s.store(b"two")?;
        assert_eq!(s.load()?.as_deref(), Some(&b"old"[..]));
        s.end_deferral()?;
        assert_eq!(s.load()?.as_deref(), Some(&b"two"[..]));
        s.store(b"three")?;
        assert_eq!(s.load()?.as_deref(), Some(&b"three"[..]));
        Ok(())
    }

    #[test]
    fn second_open_is_refused_while_locked() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let first = StateDir::open(tmp.path())?;
        let err = StateDir::open(tmp.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("in use by another ukvtpm server"), "{err}");
        drop(first);
        StateDir::open(tmp.path())?;
        Ok(())
    }

    #[test]
    fn a_file_is_not_a_state_directory() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("f");
        fs::write(&file, b"x")?;
        assert!(StateDir::open(&file).is_err());
        assert!(StateDir::open(&file.join("sub")).is_err());
        Ok(())
    }

    #[test]
    fn leftover_temp_file_is_removed() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        fs::write(tmp.path().join(TEMP_FILE), b"half")?;
        StateDir::open(tmp.path())?;
        assert!(!tmp.path().join(TEMP_FILE).exists());
        Ok(())
    }
}
