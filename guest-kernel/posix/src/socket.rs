//! TCP sockets over the `sock` interface of the net component (IPv4, server side:
//! `socket`, `bind`, `listen`, `accept4`, non-blocking reads and writes, `close`).
//!
//! Received bytes are read from each connection's ring in the shared heap without a
//! gate call; sends, accepts and closes are gate calls (direct calls when net shares
//! the compartment). A listening socket accepts ahead: when the stack's event word
//! changes, one `accept` call asks for a new connection and keeps it until the
//! program's `accept4` takes it, so readiness (`epoll`) is exact.
//!
//! Not offered: IPv6 and Unix sockets (`EAFNOSUPPORT`, which Redis's optional `-::*`
//! bind expects), UDP, and outgoing connections (`connect` is `ENETUNREACH`).

use alloc::collections::VecDeque;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::RefCell;

use flexos_net::{Conn, Listener, Net, Recv, Sockets, sock};

use crate::Global;
use crate::fd::{self, Desc, Kind};
use crate::linux::*;
use crate::sched::{self, Wait};

const ENETUNREACH: i64 = 101;

/// The net component this image calls, set by [`crate::System`], and its socket
/// interface once the first socket is made.
struct NetState {
    server: &'static sock::Server<Net>,
    component: u16,
    sockets: Option<&'static Sockets>,
    /// Our address (the `ip=` argument), for `getsockname`.
    ip: [u8; 4],
}

static NET: Global<RefCell<Option<NetState>>> = Global::new(RefCell::new(None));
/// Listeners the program closed, by port. The stack's sock interface has no way to
/// stop listening, so a closed listening socket keeps its stack listener here and a
/// later `listen` on the same port takes it back (Redis's `CONFIG SET bind` closes its
/// listeners, then listens again on the same port).
static DORMANT: Global<RefCell<Vec<(u16, Listener)>>> = Global::new(RefCell::new(Vec::new()));

/// What a waiting thread watches: sockets and pipes whose readiness it waits for, and
/// the stack's event word when it began. Weak references: watching a descriptor must
/// not keep it open after the program closes it.
struct Watch {
    descs: Vec<Weak<RefCell<crate::fd::Open>>>,
    events_at: u64,
}

static WATCH: Global<RefCell<Watch>> = Global::new(RefCell::new(Watch {
    descs: Vec::new(),
    events_at: 0,
}));

/// At the end of the program: waits (at most `timeout_ns`) until the peers have
/// acknowledged the FINs of the connections just closed, as a kernel keeps sending
/// them after the process is gone, so clients see the connection end.
pub fn linger(timeout_ns: u64) {
    let sockets = NET.get().borrow().as_ref().and_then(|n| n.sockets);
    if let Some(s) = sockets {
        s.linger(timeout_ns);
    }
}

/// Connects the layer to the net component `component`, served by `server`.
pub fn connect_net(server: &'static sock::Server<Net>, component: u16) {
    let ip = flexos_kernel::Args::of_run()
        .get("ip")
        .and_then(flexos_net::args::parse_cidr)
        .map_or([0; 4], |(ip, _)| ip);
    *NET.get().borrow_mut() = Some(NetState {
        server,
        component,
        sockets: None,
        ip,
    });
    sched::set_events_check(events_check);
}

/// The socket interface, started at the first use.
fn sockets() -> Result<&'static Sockets, i64> {
    let (server, component) = {
        let guard = NET.get().borrow();
        let Some(net) = guard.as_ref() else {
            return Err(-EAFNOSUPPORT);
        };
        if let Some(s) = net.sockets {
            return Ok(s);
        }
        (net.server, net.component)
    };
    let s = Sockets::new(server, component).map_err(|code| {
        flexos_kernel::println!(
            "posix: the network is unavailable: {} (code {code})",
            flexos_net::codes::describe(code)
        );
        -ENETDOWN
    })?;
    let s: &'static Sockets = alloc::boxed::Box::leak(alloc::boxed::Box::new(s));
    if let Some(net) = NET.get().borrow_mut().as_mut() {
        net.sockets = Some(s);
    }
    Ok(s)
}

fn our_ip() -> [u8; 4] {
    NET.get().borrow().as_ref().map_or([0; 4], |n| n.ip)
}

/// A socket.
pub enum Socket {
    /// Made, maybe bound, not listening.
    Fresh { port: u16 },
    Listening {
        listener: Listener,
        port: u16,
        /// Connections accepted ahead of the program.
        pending: VecDeque<Conn>,
        /// The event word when the stack was last asked.
        seen_events: u64,
    },
    Stream {
        conn: Conn,
        port: u16,
        /// The client's address and port.
        peer: ([u8; 4], u16),
        /// The last send found the buffer full.
        send_blocked: bool,
        /// Bytes written and not yet handed to the stack (net in another
        /// compartment: see [`flush`]).
        out: Outq,
    },
}

/// A stream's queue of written bytes, with the stack in another compartment: every
/// write there would be a gate round trip, and a server writes once per client per
/// turn of its event loop. Writes are queued here instead (up to [`OUTQ`] bytes, a
/// kernel's socket buffer) and all queues go to the stack in one `send_batch` call
/// before the program waits ([`flush`]: epoll, poll, any blocking wait), or when a
/// queue is full.
#[derive(Default)]
pub struct Outq {
    bytes: VecDeque<u8>,
    /// In [`QUEUED`] (so it is listed once).
    listed: bool,
    /// The stack refused the bytes (the connection is gone): the next write fails.
    broken: bool,
}

/// Bytes a stream queues before the writer must wait for a flush.
const OUTQ: usize = 64 << 10;

/// Streams with queued bytes.
static QUEUED: Global<RefCell<Vec<Weak<RefCell<fd::Open>>>>> =
    Global::new(RefCell::new(Vec::new()));

/// Bytes wait in some stream's queue for room in the stack.
pub fn queued() -> bool {
    !QUEUED.get().borrow().is_empty()
}

/// Hands every queued byte the stack has room for to it, in one gate call (more when
/// the batch buffer is full); streams with bytes left stay queued. Cheap when nothing
/// is queued: call it before every wait.
pub fn flush() {
    let list = core::mem::take(&mut *QUEUED.get().borrow_mut());
    if list.is_empty() {
        return;
    }
    let Ok(s) = sockets() else { return };
    let descs: Vec<Desc> = list.iter().filter_map(Weak::upgrade).collect();
    // A stream in use right now (borrowed up the stack) waits for the next flush.
    let (busy, free): (Vec<&Desc>, Vec<&Desc>) =
        descs.iter().partition(|d| d.try_borrow_mut().is_err());
    let mut again: Vec<_> = busy.into_iter().map(Rc::downgrade).collect();
    let mut open: Vec<_> = free.iter().map(|d| d.borrow_mut()).collect();
    let results = {
        let items: Vec<(&Conn, &[u8])> = open
            .iter_mut()
            .filter_map(|o| match &mut o.kind {
                Kind::Socket(Socket::Stream { conn, out, .. }) if !out.bytes.is_empty() => {
                    Some((&*conn, &*out.bytes.make_contiguous()))
                }
                _ => None,
            })
            .collect();
        s.send_batch(&items)
    };
    let results = results.unwrap_or_default();
    let mut answers = results.into_iter();
    for (o, d) in open.iter_mut().zip(&free) {
        let Kind::Socket(Socket::Stream { out, .. }) = &mut o.kind else {
            continue;
        };
        if out.bytes.is_empty() {
            out.listed = false;
            continue;
        }
        match answers.next() {
            Some(n) if n >= 0 => {
                out.bytes.drain(..(n as usize).min(out.bytes.len()));
            }
            Some(_) => {
                out.bytes.clear();
                out.broken = true;
            }
            None => {}
        }
        if out.bytes.is_empty() {
            out.listed = false;
        } else {
            again.push(Rc::downgrade(*d));
        }
    }
    drop(open);
    QUEUED.get().borrow_mut().extend(again);
}

impl Socket {
    pub fn close(self) {
        let Ok(s) = sockets() else { return };
        match self {
            Socket::Stream { conn, mut out, .. } => {
                // What the program wrote goes before the FIN (at most 1 s of waiting
                // for room, as a closing kernel socket lingers).
                let deadline = flexos_kernel::time::now_ns() + 1_000_000_000;
                while !out.broken && !out.bytes.is_empty() {
                    match s.try_send(&conn, out.bytes.make_contiguous()) {
                        Ok(0) if flexos_kernel::time::now_ns() < deadline => {
                            flexos_kernel::gate::poll_once();
                        }
                        Ok(n) if n > 0 => {
                            out.bytes.drain(..n.min(out.bytes.len()));
                        }
                        _ => break,
                    }
                }
                let _ = s.close(conn);
            }
            Socket::Listening {
                listener,
                port,
                pending,
                ..
            } => {
                for c in pending {
                    let _ = s.close(c);
                }
                DORMANT.get().borrow_mut().push((port, listener));
            }
            Socket::Fresh { .. } => {}
        }
    }

    /// A read would not block (bytes, end of stream, or a connection to accept).
    pub fn readable(&mut self) -> bool {
        match self {
            Socket::Stream { conn, .. } => conn.readable(),
            Socket::Listening {
                listener,
                pending,
                seen_events,
                ..
            } => {
                if pending.is_empty()
                    && let Ok(s) = sockets()
                {
                    let now = s.events();
                    if now != *seen_events {
                        *seen_events = now;
                        while let Ok(Some(c)) = s.try_accept(*listener) {
                            pending.push_back(c);
                        }
                    }
                }
                !pending.is_empty()
            }
            Socket::Fresh { .. } => false,
        }
    }

    /// Bytes received and not yet read (`FIONREAD`): 0 but for a stream.
    pub fn unread(&mut self) -> usize {
        match self {
            Socket::Stream { conn, .. } => conn.available(),
            _ => 0,
        }
    }

    /// When the oldest unread bytes of a stream arrived (a stamp to serve ready
    /// connections in arrival order; 0 for other sockets).
    pub fn arrival(&self) -> u64 {
        match self {
            Socket::Stream { conn, .. } => conn.since(),
            _ => 0,
        }
    }

    /// A write would not block: once a send found the buffer full, only when half of
    /// it is free again (else an app that polls for POLLOUT would spin on sends that
    /// take nothing, and in one compartment starve the stack that drains them).
    pub fn writable(&mut self) -> bool {
        match self {
            Socket::Stream {
                conn,
                send_blocked,
                out,
                ..
            } => {
                if out.broken {
                    return true;
                }
                if !conn.local() {
                    return out.bytes.len() <= OUTQ / 2;
                }
                if *send_blocked
                    && let Ok(s) = sockets()
                    && s.unacked(conn)
                        .is_ok_and(|n| n <= flexos_net::SEND_BUFFER / 2)
                {
                    *send_blocked = false;
                }
                !*send_blocked
            }
            _ => false,
        }
    }
}

/// `socket(domain, type, protocol)`.
pub fn socket(domain: u64, ty: u64, _protocol: u64) -> i64 {
    match domain {
        AF_INET => {}
        AF_INET6 | AF_UNIX => return -EAFNOSUPPORT,
        _ => return -EAFNOSUPPORT,
    }
    if ty & SOCK_TYPE_MASK != SOCK_STREAM {
        return -EPROTONOSUPPORT;
    }
    if let Err(e) = sockets() {
        return e;
    }
    let flags = O_RDWR
        | if ty & SOCK_NONBLOCK != 0 {
            O_NONBLOCK
        } else {
            0
        };
    fd::install(
        Kind::Socket(Socket::Fresh { port: 0 }),
        flags,
        ty & SOCK_CLOEXEC != 0,
    )
}

/// Runs `f` on the socket behind `fd`.
fn with_socket<R>(fd: i64, f: impl FnOnce(&mut Socket, bool) -> Result<R, i64>) -> Result<R, i64> {
    let desc = fd::get(fd)?;
    let mut open = desc.borrow_mut();
    let nonblock = open.nonblocking();
    match &mut open.kind {
        Kind::Socket(s) => f(s, nonblock),
        _ => Err(-ENOTSOCK),
    }
}

fn read_sockaddr(addr: *const u8, len: u64) -> Result<SockaddrIn, i64> {
    if addr.is_null() {
        return Err(-EFAULT);
    }
    if (len as usize) < core::mem::size_of::<SockaddrIn>() {
        return Err(-EINVAL);
    }
    // SAFETY: musl passes a sockaddr of `len` bytes, at least a sockaddr_in.
    let sa = unsafe { (addr as *const SockaddrIn).read_unaligned() };
    if u64::from(sa.family) != AF_INET {
        return Err(-EAFNOSUPPORT);
    }
    Ok(sa)
}

/// Writes `ip:port` as a sockaddr_in to `addr` (with `*len` bytes of room).
fn write_sockaddr(addr: *mut u8, len: *mut u32, ip: [u8; 4], port: u16) -> i64 {
    if addr.is_null() || len.is_null() {
        return 0;
    }
    let sa = SockaddrIn {
        family: AF_INET as u16,
        port: port.to_be(),
        addr: ip,
        zero: [0; 8],
    };
    // SAFETY: musl passes a socklen_t and a buffer of that many bytes.
    unsafe {
        let room = len.read() as usize;
        let n = room.min(core::mem::size_of::<SockaddrIn>());
        core::ptr::copy_nonoverlapping(&sa as *const SockaddrIn as *const u8, addr, n);
        len.write(core::mem::size_of::<SockaddrIn>() as u32);
    }
    0
}

/// `bind(fd, addr, len)`.
pub fn bind(fd: i64, addr: *const u8, len: u64) -> i64 {
    let sa = match read_sockaddr(addr, len) {
        Ok(sa) => sa,
        Err(e) => return e,
    };
    let ip = our_ip();
    if sa.addr != [0; 4] && sa.addr != ip && sa.addr != [127, 0, 0, 1] {
        return -EADDRNOTAVAIL;
    }
    with_socket(fd, |s, _| match s {
        Socket::Fresh { port } => {
            *port = u16::from_be(sa.port);
            Ok(0)
        }
        _ => Err(-EINVAL),
    })
    .unwrap_or_else(|e| e)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: i64) -> i64 {
    let s = match sockets() {
        Ok(s) => s,
        Err(e) => return e,
    };
    with_socket(fd, |sock, _| match sock {
        Socket::Fresh { port } if *port != 0 => {
            let mut dormant = DORMANT.get().borrow_mut();
            let listener = match dormant.iter().position(|(p, _)| p == port) {
                Some(i) => dormant.swap_remove(i).1,
                None => s.listen(*port).map_err(|code| match code {
                    flexos_net::codes::E_PORT => -EADDRINUSE,
                    _ => -ENOBUFS,
                })?,
            };
            // One line a listen, for whoever waits for the program to be reachable
            // (what it logs itself is up to its configuration).
            let [a, b, c, d] = our_ip();
            flexos_kernel::println!("posix: listening on {a}.{b}.{c}.{d}:{port}");
            *sock = Socket::Listening {
                listener,
                port: *port,
                pending: VecDeque::new(),
                seen_events: u64::MAX,
            };
            Ok(0)
        }
        Socket::Fresh { .. } => Err(-EDESTADDRREQ),
        Socket::Listening { .. } => Ok(0),
        Socket::Stream { .. } => Err(-EINVAL),
    })
    .unwrap_or_else(|e| e)
}

/// `accept4(fd, addr, len, flags)`.
pub fn accept(fd: i64, addr: *mut u8, len: *mut u32, flags: u64) -> i64 {
    loop {
        let got = with_socket(fd, |sock, nonblock| {
            // Asks the stack for a connection if none is waiting here.
            sock.readable();
            match sock {
                Socket::Listening { port, pending, .. } => match pending.pop_front() {
                    Some(conn) => Ok(Some((conn, *port))),
                    None if nonblock => Err(-EAGAIN),
                    None => Ok(None),
                },
                _ => Err(-EINVAL),
            }
        });
        match got {
            Ok(Some((conn, port))) => {
                let peer = sockets()
                    .and_then(|s| s.peer(&conn).map_err(|_| -ENOTCONN))
                    .unwrap_or(([0; 4], 0));
                let mut fl = O_RDWR;
                if flags & SOCK_NONBLOCK != 0 {
                    fl |= O_NONBLOCK;
                }
                let new = fd::install(
                    Kind::Socket(Socket::Stream {
                        conn,
                        port,
                        peer,
                        send_blocked: false,
                        out: Outq::default(),
                    }),
                    fl,
                    flags & SOCK_CLOEXEC != 0,
                );
                if new >= 0 {
                    write_sockaddr(addr, len, peer.0, peer.1);
                }
                return new;
            }
            Ok(None) => wait_for(fd),
            Err(e) => {
                if e == -EAGAIN {
                    fd::exhausted(fd, true);
                }
                return e;
            }
        }
    }
}

/// Blocks the running thread until `fd` may be ready (or 10 ms pass).
fn wait_for(fd: i64) {
    if let Ok(desc) = fd::get(fd) {
        watch(alloc::vec![desc]);
    }
    sched::block(
        Wait::Events,
        Some(flexos_kernel::time::now_ns() + 10_000_000),
    );
}

/// Sets what a thread about to wait for events watches.
pub fn watch(descs: Vec<Desc>) {
    let events_at = NET
        .get()
        .borrow()
        .as_ref()
        .and_then(|n| n.sockets)
        .map_or(0, |s| s.events());
    let descs = descs.iter().map(alloc::rc::Rc::downgrade).collect();
    *WATCH.get().borrow_mut() = Watch { descs, events_at };
}

/// The readiness check the scheduler's idle wait runs: shared words and private
/// queues only, no gate call.
fn events_check() -> bool {
    let w = WATCH.get().borrow();
    let sockets = NET.get().borrow().as_ref().and_then(|n| n.sockets);
    if sockets.is_some_and(|s| s.events() != w.events_at) {
        return true;
    }
    w.descs
        .iter()
        .filter_map(Weak::upgrade)
        .any(|d| match d.try_borrow() {
            Ok(open) => match &open.kind {
                Kind::Socket(Socket::Stream { conn, .. }) => conn.readable(),
                Kind::Pipe(p) => p.readable(),
                _ => false,
            },
            Err(_) => false,
        })
}

/// Receives into `dst` from a stream socket.
pub fn recv(fd: i64, dst: &mut [u8], flags: u64) -> i64 {
    loop {
        let r = with_socket(fd, |sock, nonblock| match sock {
            Socket::Stream { conn, .. } => match conn.try_recv(dst) {
                Ok(Recv::Data(n)) => Ok(Some(n as i64)),
                Ok(Recv::End) => Ok(Some(0)),
                Ok(Recv::Empty) if nonblock || flags & MSG_DONTWAIT != 0 => Err(-EAGAIN),
                Ok(Recv::Empty) => Ok(None),
                Err(_) => Err(-ECONNRESET),
            },
            _ => Err(-ENOTCONN),
        });
        match r {
            Ok(Some(n)) => {
                if (n as usize) < dst.len() {
                    fd::exhausted(fd, true);
                }
                return n;
            }
            Ok(None) => wait_for(fd),
            Err(e) => {
                if e == -EAGAIN {
                    fd::exhausted(fd, true);
                }
                return e;
            }
        }
    }
}

/// Sends `src` on a stream socket: what the send buffer takes (non-blocking), or all
/// of it (blocking).
pub fn send(fd: i64, src: &[u8], flags: u64) -> i64 {
    let s = match sockets() {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut done = 0usize;
    loop {
        let r = with_socket(fd, |sock, nonblock| match sock {
            Socket::Stream { out, .. } if out.broken => Err(-EPIPE),
            Socket::Stream { conn, out, .. } if !conn.local() => {
                let n = OUTQ.saturating_sub(out.bytes.len()).min(src.len() - done);
                out.bytes.extend(&src[done..done + n]);
                done += n;
                if !out.bytes.is_empty() && !out.listed {
                    out.listed = true;
                    if let Ok(d) = fd::get(fd) {
                        QUEUED.get().borrow_mut().push(Rc::downgrade(&d));
                    }
                }
                Ok(nonblock || flags & MSG_DONTWAIT != 0)
            }
            Socket::Stream {
                conn, send_blocked, ..
            } => {
                while done < src.len() {
                    match s.try_send(conn, &src[done..]) {
                        Ok(0) => {
                            *send_blocked = true;
                            break;
                        }
                        Ok(n) => done += n,
                        Err(_) => return Err(-EPIPE),
                    }
                }
                Ok(nonblock || flags & MSG_DONTWAIT != 0)
            }
            _ => Err(-ENOTCONN),
        });
        match r {
            Err(e) if done == 0 => return e,
            Err(_) => return done as i64,
            Ok(_) if done == src.len() => return done as i64,
            Ok(true) => {
                fd::exhausted(fd, false);
                return if done > 0 { done as i64 } else { -EAGAIN };
            }
            Ok(false) => {
                flush();
                flexos_kernel::gate::poll_once();
                sched::block(Wait::Sleep, Some(flexos_kernel::time::now_ns() + 100_000));
            }
        }
    }
}

/// `getsockname(fd, addr, len)`.
pub fn getsockname(fd: i64, addr: *mut u8, len: *mut u32) -> i64 {
    let port = with_socket(fd, |s, _| {
        Ok(match s {
            Socket::Fresh { port }
            | Socket::Listening { port, .. }
            | Socket::Stream { port, .. } => *port,
        })
    });
    match port {
        Ok(p) => write_sockaddr(addr, len, our_ip(), p),
        Err(e) => e,
    }
}

/// `getpeername(fd, addr, len)`.
pub fn getpeername(fd: i64, addr: *mut u8, len: *mut u32) -> i64 {
    match with_socket(fd, |s, _| match s {
        Socket::Stream { peer, .. } => Ok(*peer),
        _ => Err(-ENOTCONN),
    }) {
        Ok((ip, port)) => write_sockaddr(addr, len, ip, port),
        Err(e) => e,
    }
}

/// `setsockopt`: the options servers set are accepted (the stack's own settings
/// apply); others are `ENOPROTOOPT`.
pub fn setsockopt(fd: i64, level: u64, name: u64) -> i64 {
    if let Err(e) = fd::get(fd) {
        return e;
    }
    let known = match level {
        SOL_SOCKET => matches!(
            name,
            SO_REUSEADDR
                | SO_KEEPALIVE
                | SO_SNDBUF
                | SO_RCVBUF
                | SO_LINGER
                | SO_REUSEPORT
                | SO_RCVTIMEO
                | SO_SNDTIMEO
        ),
        IPPROTO_TCP => true,
        IPPROTO_IPV6 => true,
        _ => false,
    };
    if known { 0 } else { -ENOPROTOOPT }
}

/// `getsockopt(fd, level, name, value, len)`.
pub fn getsockopt(fd: i64, level: u64, name: u64, value: *mut u8, len: *mut u32) -> i64 {
    if let Err(e) = fd::get(fd) {
        return e;
    }
    if value.is_null() || len.is_null() {
        return -EFAULT;
    }
    let v: i32 = match (level, name) {
        (SOL_SOCKET, SO_ERROR) => 0,
        (SOL_SOCKET, SO_TYPE) => SOCK_STREAM as i32,
        (SOL_SOCKET, SO_SNDBUF) | (SOL_SOCKET, SO_RCVBUF) => 2 << 20,
        (SOL_SOCKET, _) | (IPPROTO_TCP, _) => 0,
        _ => return -ENOPROTOOPT,
    };
    // SAFETY: musl passes an option buffer and its length.
    unsafe {
        if (len.read() as usize) < 4 {
            return -EINVAL;
        }
        (value as *mut i32).write_unaligned(v);
        len.write(4);
    }
    0
}

/// `connect`: no outgoing connections.
pub fn connect(fd: i64) -> i64 {
    with_socket(fd, |_, _| Err::<i64, i64>(-ENETUNREACH)).unwrap_or_else(|e| e)
}
