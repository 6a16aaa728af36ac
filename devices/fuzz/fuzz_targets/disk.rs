//! One small disk file per fuzzing process, shared by the targets. It is unlinked at
//! once and reached through /proc/self/fd, so fuzzing leaves no files behind.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Sectors in the fuzz disk.
pub const SECTORS: u64 = 64;

pub fn path() -> &'static PathBuf {
    static DISK: OnceLock<(File, PathBuf)> = OnceLock::new();
    &DISK
        .get_or_init(|| {
            let path = std::path::Path::new("/dev/shm")
                .join(format!("devices-fuzz-{}.img", std::process::id()));
            std::fs::write(&path, vec![0u8; (SECTORS * 512) as usize]).expect("fuzz disk");
            let file = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .expect("fuzz disk");
            std::fs::remove_file(&path).expect("unlink fuzz disk");
            let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            (file, fd_path)
        })
        .1
}
