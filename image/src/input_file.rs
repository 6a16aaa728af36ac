//! Opening a file the user named (image, placement file) without trusting what it is.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading without blocking (a FIFO given instead of a file cannot
/// hang the open; regular files ignore the flag) and returns it with the metadata of
/// what was opened, not of what the path named a moment earlier. Callers check
/// `is_file()` and the size before reading.
pub fn open_for_reading(path: &Path) -> io::Result<(File, Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}
