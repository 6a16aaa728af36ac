//! Pipes between the threads of the program: a byte queue in private memory (64 KiB,
//! as Linux's default), a read end and a write end. Redis opens some to signal its
//! own event loop; nothing crosses a compartment.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::RefCell;

use crate::linux::{EAGAIN, EPIPE};
use crate::sched::{self, Wait};

/// Bytes a pipe holds.
pub const CAPACITY: usize = 64 * 1024;

pub struct Pipe {
    bytes: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

/// One end of a pipe.
pub struct PipeEnd {
    pipe: Rc<RefCell<Pipe>>,
    pub write: bool,
}

/// A new pipe: (read end, write end).
pub fn new() -> (PipeEnd, PipeEnd) {
    let pipe = Rc::new(RefCell::new(Pipe {
        bytes: VecDeque::new(),
        readers: 1,
        writers: 1,
    }));
    (
        PipeEnd {
            pipe: pipe.clone(),
            write: false,
        },
        PipeEnd { pipe, write: true },
    )
}

impl PipeEnd {
    pub fn close(self) {
        let mut p = self.pipe.borrow_mut();
        if self.write {
            p.writers -= 1;
        } else {
            p.readers -= 1;
        }
    }

    /// Bytes to read, or the write end closed (a read would not block).
    pub fn readable(&self) -> bool {
        let p = self.pipe.borrow();
        !p.bytes.is_empty() || p.writers == 0
    }

    /// Bytes waiting to be read.
    pub fn unread(&self) -> usize {
        self.pipe.borrow().bytes.len()
    }

    /// The write end is closed (for a socketpair: the peer hung up).
    pub fn hung_up(&self) -> bool {
        self.pipe.borrow().writers == 0
    }

    /// Room to write, or the read end closed (a write would not block).
    pub fn writable(&self) -> bool {
        let p = self.pipe.borrow();
        p.bytes.len() < CAPACITY || p.readers == 0
    }

    /// Reads into `dst`; waits (running other threads) unless `nonblock`.
    pub fn read(&self, dst: &mut [u8], nonblock: bool) -> i64 {
        loop {
            {
                let mut p = self.pipe.borrow_mut();
                if !p.bytes.is_empty() {
                    let n = dst.len().min(p.bytes.len());
                    for (d, b) in dst.iter_mut().zip(p.bytes.drain(..n)) {
                        *d = b;
                    }
                    return n as i64;
                }
                if p.writers == 0 || dst.is_empty() {
                    return 0;
                }
            }
            if nonblock {
                return -EAGAIN;
            }
            sched::block(
                Wait::Events,
                Some(flexos_kernel::time::now_ns() + 1_000_000),
            );
        }
    }

    /// Writes from `src`; waits for room unless `nonblock`.
    pub fn write(&self, src: &[u8], nonblock: bool) -> i64 {
        let mut done = 0;
        loop {
            {
                let mut p = self.pipe.borrow_mut();
                if p.readers == 0 {
                    return if done > 0 { done as i64 } else { -EPIPE };
                }
                let room = CAPACITY - p.bytes.len();
                let n = room.min(src.len() - done);
                p.bytes.extend(&src[done..done + n]);
                done += n;
                if done == src.len() {
                    return done as i64;
                }
            }
            if nonblock {
                return if done > 0 { done as i64 } else { -EAGAIN };
            }
            sched::block(
                Wait::Events,
                Some(flexos_kernel::time::now_ns() + 1_000_000),
            );
        }
    }
}
