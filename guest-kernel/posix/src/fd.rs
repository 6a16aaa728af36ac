//! File descriptors: a table of small integers naming open file descriptions, shared
//! by `dup` (an `Rc`), each of one kind: the console, `/dev/null` and
//! `/dev/urandom`, a file or the root directory of the vfs component, a socket of
//! the net component, a pipe, or an epoll set.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::Global;
use crate::builtin::Builtin;
use crate::epoll::Epoll;
use crate::files::{Dir, File};
use crate::linux::{EBADF, EMFILE, O_NONBLOCK};
use crate::pipe::PipeEnd;
use crate::process::MAX_FDS;
use crate::socket::Socket;

/// What an open file description is.
pub enum Kind {
    /// Standard input (reads end at once) or output (the console).
    Console {
        output: bool,
    },
    /// `/dev/null`.
    Null,
    /// `/dev/urandom` and `/dev/random`.
    Random,
    File(File),
    /// A built-in read-only file (`/etc/passwd`, an image's default).
    Builtin(Builtin),
    Dir(Dir),
    Socket(Socket),
    Pipe(PipeEnd),
    /// One end of a `socketpair`: what the other end writes is read here (`rx`), and
    /// the other way round (`tx`); two pipes.
    Pair {
        rx: PipeEnd,
        tx: PipeEnd,
    },
    /// An `eventfd` counter.
    EventFd(u64),
    Epoll(Epoll),
}

/// An open file description.
pub struct Open {
    pub kind: Kind,
    /// O_NONBLOCK, O_APPEND and the access mode, as `F_GETFL` reports them.
    pub flags: u64,
    /// How often the program found the input and the output exhausted: the edges
    /// edge-triggered epoll waits for (see [`crate::epoll`]).
    pub edges: Edges,
}

/// Counts of reads and writes that took all there was: a read or accept that found
/// nothing (or less than it asked for), a write that found no room (or less than it
/// offered). The next readiness after one of these is a new edge.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Edges {
    pub input: u32,
    pub output: u32,
}

/// Notes that a read (`input`) or write on `fd` took all there was.
pub fn exhausted(fd: i64, input: bool) {
    if let Ok(desc) = get(fd)
        && let Ok(mut open) = desc.try_borrow_mut()
    {
        let e = &mut open.edges;
        if input {
            e.input = e.input.wrapping_add(1);
        } else {
            e.output = e.output.wrapping_add(1);
        }
    }
}

impl Open {
    pub fn nonblocking(&self) -> bool {
        self.flags & O_NONBLOCK != 0
    }
}

pub type Desc = Rc<RefCell<Open>>;

struct Entry {
    desc: Desc,
    cloexec: bool,
}

static TABLE: Global<RefCell<Vec<Option<Entry>>>> = Global::new(RefCell::new(Vec::new()));

/// Opens descriptors 0, 1 and 2 on the console.
pub fn init_stdio() {
    let mut t = TABLE.get().borrow_mut();
    t.clear();
    for output in [false, true, true] {
        t.push(Some(Entry {
            desc: Rc::new(RefCell::new(Open {
                kind: Kind::Console { output },
                flags: if output { 1 } else { 0 },
                edges: Edges::default(),
            })),
            cloexec: false,
        }));
    }
}

/// The description behind `fd`.
pub fn get(fd: i64) -> Result<Desc, i64> {
    let t = TABLE.get().borrow();
    usize::try_from(fd)
        .ok()
        .and_then(|i| t.get(i))
        .and_then(|e| e.as_ref())
        .map(|e| e.desc.clone())
        .ok_or(-EBADF)
}

/// Installs `desc` at the lowest free descriptor at least `min`; the descriptor or
/// `-EMFILE`.
pub fn install_from(desc: Desc, min: usize, cloexec: bool) -> i64 {
    let mut t = TABLE.get().borrow_mut();
    let free = (min..t.len()).find(|&i| t[i].is_none());
    let i = match free {
        Some(i) => i,
        None => {
            let i = t.len().max(min);
            if i as u64 >= MAX_FDS {
                return -EMFILE;
            }
            t.resize_with(i + 1, || None);
            i
        }
    };
    t[i] = Some(Entry { desc, cloexec });
    i as i64
}

/// Installs a new description of `kind` at the lowest free descriptor.
pub fn install(kind: Kind, flags: u64, cloexec: bool) -> i64 {
    install_from(
        Rc::new(RefCell::new(Open {
            kind,
            flags,
            edges: Edges::default(),
        })),
        0,
        cloexec,
    )
}

/// `dup2`/`dup3`: makes `new` name what `old` names (closing what `new` named).
pub fn dup_to(old: i64, new: i64, cloexec: bool) -> i64 {
    let desc = match get(old) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let Ok(new_i) = usize::try_from(new) else {
        return -EBADF;
    };
    if new_i as u64 >= MAX_FDS {
        return -EBADF;
    }
    let previous = {
        let mut t = TABLE.get().borrow_mut();
        if t.len() <= new_i {
            t.resize_with(new_i + 1, || None);
        }
        t[new_i].replace(Entry { desc, cloexec })
    };
    if let Some(prev) = previous {
        release(prev.desc);
    }
    new
}

/// `close(fd)`.
pub fn close(fd: i64) -> i64 {
    let entry = {
        let mut t = TABLE.get().borrow_mut();
        let Some(slot) = usize::try_from(fd).ok().and_then(|i| t.get_mut(i)) else {
            return -EBADF;
        };
        slot.take()
    };
    match entry {
        Some(e) => {
            release(e.desc);
            0
        }
        None => -EBADF,
    }
}

/// Drops one reference to a description; the last one closes it (outside any borrow
/// of the table: closing a socket is a gate call).
fn release(desc: Desc) {
    if let Ok(cell) = Rc::try_unwrap(desc) {
        let open = cell.into_inner();
        match open.kind {
            Kind::File(f) => f.close(),
            Kind::Socket(s) => s.close(),
            Kind::Pipe(p) => p.close(),
            Kind::Pair { rx, tx } => {
                rx.close();
                tx.close();
            }
            _ => {}
        }
    }
}

/// `FD_CLOEXEC` of `fd`.
pub fn cloexec(fd: i64) -> Result<bool, i64> {
    let t = TABLE.get().borrow();
    usize::try_from(fd)
        .ok()
        .and_then(|i| t.get(i))
        .and_then(|e| e.as_ref())
        .map(|e| e.cloexec)
        .ok_or(-EBADF)
}

pub fn set_cloexec(fd: i64, on: bool) -> i64 {
    let mut t = TABLE.get().borrow_mut();
    match usize::try_from(fd)
        .ok()
        .and_then(|i| t.get_mut(i))
        .and_then(|e| e.as_mut())
    {
        Some(e) => {
            e.cloexec = on;
            0
        }
        None => -EBADF,
    }
}

/// Closes every descriptor (the program is ending): sockets send their FIN.
pub fn close_all() {
    let entries: Vec<Entry> = TABLE.get().borrow_mut().drain(..).flatten().collect();
    for e in entries {
        release(e.desc);
    }
}
