//! Reading input files within limits, and writing output files so that a reader
//! (or a crash) never sees half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::cli::Invalid;

/// The largest fleet snapshot or exemption file read, in bytes.
pub const MAX_DATA_BYTES: u64 = 1 << 30;

/// Reads a UTF-8 text file of at most `limit` bytes.
///
/// # Errors
/// [`Invalid`] naming the file: unreadable, larger than `limit`, or not UTF-8 (with
/// the offset, line and column of the first bad byte).
pub fn read_text(path: &Path, limit: u64) -> anyhow::Result<String> {
    let name = path.display();
    let cannot = |e: std::io::Error| anyhow!(Invalid(format!("{name}: cannot read: {e}")));
    let mut file = File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    // One byte more than the limit tells a file that is too large.
    Read::by_ref(&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(anyhow!(Invalid(format!(
            "{name}: the file is larger than {limit} bytes, the most this command reads"
        ))));
    }
    match ec2_scheduler_config::utf8(&bytes) {
        Ok(_) => Ok(String::from_utf8(bytes).expect("checked as UTF-8")),
        Err(msg) => Err(anyhow!(Invalid(format!("{name}: {msg}")))),
    }
}

/// Writes `text` to `path` through a temporary file in the same directory, flushed to
/// disk and renamed over `path`: readers see the old file or the new one, never a
/// part, whatever happens to this process.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
pub fn write_atomic(path: &Path, text: &[u8]) -> anyhow::Result<()> {
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
    result.with_context(|| format!("writing {}", path.display()))
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
    pub fn exclusive(path: &Path) -> anyhow::Result<Self> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let lock_path = path.with_file_name(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(FileLock { _file: file })
    }
}
