//! The monitor's own standard streams. Its exit status must survive whatever they are
//! connected to: a closed descriptor, or a pipe whose reader has gone. `eprintln!`
//! panics (exit 101) when stderr fails, so the monitor writes there only through
//! [`stderr_line!`](crate::stderr_line) and [`stderr`], which drop what cannot be
//! written; likewise stdout through [`stdout`] (and the console).

use std::io::Write;

/// Writes `text` to stderr; a failure loses the text, nothing else.
pub fn stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes `text` to stdout (`print!` panics on a closed pipe, e.g. `| head -1`).
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `eprintln!` that never panics (see the module docs).
#[macro_export]
macro_rules! stderr_line {
    ($($arg:tt)*) => {
        $crate::stdio::stderr(&::std::format!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// Points any of stdin, stdout and stderr that is closed at /dev/null, before anything
/// else opens a file: otherwise the next file opened (an image, /dev/kvm, guest memory)
/// would get that descriptor, and a crash report would be written into it.
pub fn reserve_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor's flags; an invalid one fails
        // with EBADF and changes nothing.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if closed {
            // The lowest free descriptor is `fd`, so /dev/null lands there; it stays
            // open for the life of the process (never wrapped in an owning type).
            // SAFETY: the path is a NUL-terminated literal; the result is only
            // compared, never closed.
            let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            debug_assert!(got == -1 || got == fd);
        }
    }
}
