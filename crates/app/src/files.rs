//! Reading input files within limits, and writing output files so that a reader
//! (or a crash) never sees half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The largest fleet snapshot or exemption file read, in bytes.
pub const MAX_DATA_BYTES: u64 = 1 << 30;

/// Reads a UTF-8 text file of at most `limit` bytes.
///
/// # Errors
/// An error naming the file: unreadable, larger than `limit`, or not UTF-8 (with
/// the offset, line and column of the first bad byte).
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    let cannot = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    // One byte more than the limit tells a file that is too large.
    Read::by_ref(&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    match ec2_scheduler_config::utf8(&bytes) {
        Ok(_) => Ok(String::from_utf8(bytes).expect("checked as UTF-8")),
        Err(message) => Err(Error::NotUtf8 {
            path: path.to_path_buf(),
            message,
        }),
    }
}

/// Writes `text` to `path` through a temporary file in the same directory, flushed to
/// disk and renamed over `path`: readers see the old file or the new one, never a
/// part, whatever happens to this process.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()
    })()
    .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| Error::Write {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// An exclusive lock on `path` between processes, held until dropped. It is taken on
/// a companion file (`path` + `.lock`), since `path` itself is replaced by renames.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for and takes the lock.
    ///
    /// # Errors
    /// When the lock file cannot be opened or locked.
    pub fn exclusive(path: &Path) -> Result<Self> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let lock_path = path.with_file_name(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Write {
                what: "opening",
                path: lock_path.clone(),
                source,
            })?;
        file.lock().map_err(|source| Error::Write {
            what: "locking",
            path: lock_path.clone(),
            source,
        })?;
        Ok(FileLock { _file: file })
    }
}
