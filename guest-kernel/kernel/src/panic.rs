//! The panic handler: reports the panic to the monitor, which prints it with a
//! backtrace taken from the registers at the hypercall.
//!
//! It must work when the heap is broken or exhausted (an allocation failure panics), so
//! the message is formatted into a fixed stack buffer, truncated if long. The console is
//! flushed first so the last lines precede the report. A panic inside the handler
//! (a panicking `Display` in the message) is reported without its message.

use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use flexos_abi::PANIC_TEXT_MAX;

use crate::{console, hypercall};

static PANICKING: AtomicBool = AtomicBool::new(false);

/// A fixed buffer that keeps what fits, cut on a character boundary, and marks the cut.
struct TruncatingBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> TruncatingBuf<N> {
    const MARK: &'static str = "...";

    fn new() -> Self {
        TruncatingBuf {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> Write for TruncatingBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = N - Self::MARK.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.buf[self.len..self.len + Self::MARK.len()].copy_from_slice(Self::MARK.as_bytes());
            self.len += Self::MARK.len();
            self.truncated = true;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let (file, line, column) = info
        .location()
        .map_or(("<unknown>", 0, 0), |l| (l.file(), l.line(), l.column()));

    if PANICKING.swap(true, Ordering::Relaxed) {
        hypercall::panic(b"panic while panicking", file.as_bytes(), line, column);
    }

    console::flush_for_panic();

    let mut msg = TruncatingBuf::<{ PANIC_TEXT_MAX as usize }>::new();
    let _ = write!(msg, "{}", info.message());
    hypercall::panic(msg.as_bytes(), file.as_bytes(), line, column)
}
