//! The console: a line buffer in front of the console hypercall.
//!
//! Every hypercall is a VM exit (~26 us here), so output is buffered and sent in whole
//! lines: after each [`print!`](crate::print)/[`println!`](crate::println) everything
//! up to the last completed line (including its `'\n'`) goes out in one call, and the
//! unfinished tail stays buffered. A full buffer ([`CONSOLE_MAX`] bytes) is sent as is.
//! [`flush`] sends the tail; [`crate::exit`] and the panic handler call it.
//!
//! Re-entrance (a `Display` impl that prints while the console is held) cannot
//! deadlock: the inner print finds the lock taken and writes straight through.

use core::fmt::{self, Write};

use flexos_abi::CONSOLE_MAX;

use crate::hypercall;
use crate::sync::SpinLock;

const BUF_SIZE: usize = CONSOLE_MAX as usize;

/// Bytes not yet sent to the monitor.
struct LineBuf {
    buf: [u8; BUF_SIZE],
    len: usize,
    /// Length of the prefix of `buf` that ends with a `'\n'` (0: no complete line).
    complete: usize,
}

impl LineBuf {
    const fn new() -> Self {
        LineBuf {
            buf: [0; BUF_SIZE],
            len: 0,
            complete: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == BUF_SIZE {
                self.flush_all();
            }
            let n = bytes.len().min(BUF_SIZE - self.len);
            let (now, rest) = bytes.split_at(n);
            self.buf[self.len..self.len + n].copy_from_slice(now);
            if let Some(nl) = now.iter().rposition(|&b| b == b'\n') {
                self.complete = self.len + nl + 1;
            }
            self.len += n;
            bytes = rest;
        }
    }

    /// Sends every completed line and keeps the unfinished tail.
    fn flush_lines(&mut self) {
        if self.complete == 0 {
            return;
        }
        hypercall::console_write(&self.buf[..self.complete]);
        self.buf.copy_within(self.complete..self.len, 0);
        self.len -= self.complete;
        self.complete = 0;
    }

    /// Sends everything, finished or not.
    fn flush_all(&mut self) {
        if self.len > 0 {
            hypercall::console_write(&self.buf[..self.len]);
        }
        self.len = 0;
        self.complete = 0;
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Unbuffered writer for re-entrant prints.
struct Direct;

impl Write for Direct {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        hypercall::console_write(s.as_bytes());
        Ok(())
    }
}

static CONSOLE: SpinLock<LineBuf> = SpinLock::new(LineBuf::new());

fn print_with(args: fmt::Arguments<'_>, newline: bool) {
    match CONSOLE.try_lock() {
        Some(mut console) => {
            // Writing into the buffer cannot fail; a `Display` impl that returns an error
            // just ends its own output early, as with `std`'s print.
            let _ = console.write_fmt(args);
            if newline {
                console.push(b"\n");
            }
            console.flush_lines();
        }
        None => {
            let _ = Direct.write_fmt(args);
            if newline {
                hypercall::console_write(b"\n");
            }
        }
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    print_with(args, false);
}

#[doc(hidden)]
pub fn _println(args: fmt::Arguments<'_>) {
    print_with(args, true);
}

/// Writes raw bytes (which need not be UTF-8) through the buffer.
pub fn write_bytes(bytes: &[u8]) {
    match CONSOLE.try_lock() {
        Some(mut console) => {
            console.push(bytes);
            console.flush_lines();
        }
        None => hypercall::console_write(bytes),
    }
}

/// Sends everything buffered, including an unfinished last line.
pub fn flush() {
    if let Some(mut console) = CONSOLE.try_lock() {
        console.flush_all();
    }
}

/// Flush for the panic handler: also works when the panic struck while the console was
/// held (a panicking `Display` impl), whose frame will never run again.
pub(crate) fn flush_for_panic() {
    if CONSOLE.try_lock().is_none() {
        // SAFETY: the only holder is a frame abandoned by this panic; with
        // panic = "abort" it never resumes, so it never touches the buffer again.
        unsafe { CONSOLE.force_unlock() };
    }
    flush();
}

/// Prints to the console (buffered; sent when a line completes).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the console: one hypercall for the whole line.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_println(::core::format_args!($($arg)*))
    };
}
