//! `epoll` and `poll`: level-triggered readiness of sockets, pipes and files.
//!
//! Readiness is computed when asked (sockets look at their rings and, for listening
//! sockets, ask the stack once per change of its event word); a wait that finds
//! nothing ready blocks the thread, watching the descriptors it asked about, until
//! the network has news or its timeout passes. `EPOLLONESHOT` disarms the entry after
//! it is reported.
//!
//! `EPOLLET` reports a readiness once per edge. An edge is what a kernel wakes an
//! edge-triggered waiter for, seen from the program's side: the entry was added or
//! changed, or since the last report a read or accept found nothing or less than it
//! asked for, or a write found no room ([`fd::Edges`]). A program that reads until
//! `EAGAIN`, as the contract asks, gets every event it would from Linux; what it is
//! spared is the stream of write events a level-triggered answer would give for every
//! idle connection (Nginx registers EPOLLOUT|EPOLLET on each), which would keep its
//! event loop from ever sleeping.

use alloc::collections::BTreeMap;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::fd::{self, Desc, Edges, Kind};
use crate::linux::*;
use crate::sched::{self, Wait};
use crate::socket;

/// Longest a waiting thread sleeps before it looks again on its own (a send buffer
/// that drains, which no shared word announces).
const RECHECK_NS: u64 = 10_000_000;
/// The same while a watched stream waits for room or queued bytes wait for the stack:
/// a send buffer drains at the network's pace.
const RECHECK_SENDING_NS: u64 = 100_000;

/// One registered descriptor.
#[derive(Clone)]
struct Entry {
    /// The description it was registered for: a closed descriptor leaves the set with
    /// its description, as on Linux, even when its number is reused (Nginx closes
    /// connections without `EPOLL_CTL_DEL` and adds the next one under the same number).
    desc: Weak<RefCell<fd::Open>>,
    events: u32,
    data: u64,
    /// The descriptor's edges when it was last reported (or one behind, when added or
    /// changed), for `EPOLLET`.
    seen: Edges,
}

/// An epoll set: descriptor -> entry.
#[derive(Default)]
pub struct Epoll {
    interest: BTreeMap<i64, Entry>,
}

/// `epoll_create1(flags)`.
pub fn create(flags: u64) -> i64 {
    fd::install(
        Kind::Epoll(Epoll::default()),
        O_RDWR,
        flags & O_CLOEXEC != 0,
    )
}

fn with_epoll<R>(epfd: i64, f: impl FnOnce(&mut Epoll) -> Result<R, i64>) -> Result<R, i64> {
    let desc = fd::get(epfd)?;
    let mut open = desc.borrow_mut();
    match &mut open.kind {
        Kind::Epoll(e) => f(e),
        _ => Err(-EINVAL),
    }
}

/// `epoll_ctl(epfd, op, fd, event)`.
pub fn ctl(epfd: i64, op: u64, fd: i64, event: *const EpollEvent) -> i64 {
    if epfd == fd {
        return -EINVAL;
    }
    let desc = match fd::get(fd) {
        Ok(desc) => desc,
        Err(e) => return e,
    };
    let now = desc.borrow().edges;
    // Armed: the first wait reports what is ready, as after any change of interest.
    let armed = Edges {
        input: now.input.wrapping_sub(1),
        output: now.output.wrapping_sub(1),
    };
    let ev = if op == EPOLL_CTL_DEL {
        None
    } else if event.is_null() {
        return -EFAULT;
    } else {
        // SAFETY: musl passes the caller's `struct epoll_event`.
        Some(unsafe { event.read_unaligned() })
    };
    let entry = |ev: EpollEvent| Entry {
        desc: Rc::downgrade(&desc),
        events: ev.events,
        data: ev.data,
        seen: armed,
    };
    with_epoll(epfd, |e| {
        // An entry left by a closed description is gone.
        if e.interest.get(&fd).is_some_and(|old| !is_for(old, &desc)) {
            e.interest.remove(&fd);
        }
        match (op, ev) {
            (EPOLL_CTL_ADD, Some(ev)) => {
                if e.interest.contains_key(&fd) {
                    return Err(-EEXIST);
                }
                e.interest.insert(fd, entry(ev));
                Ok(0)
            }
            (EPOLL_CTL_MOD, Some(ev)) => match e.interest.get_mut(&fd) {
                Some(slot) => {
                    *slot = entry(ev);
                    Ok(0)
                }
                None => Err(-ENOENT),
            },
            (EPOLL_CTL_DEL, _) => e.interest.remove(&fd).map(|_| 0).ok_or(-ENOENT),
            _ => Err(-EINVAL),
        }
    })
    .unwrap_or_else(|e| e)
}

/// Whether `entry` was registered for the description `desc`.
fn is_for(entry: &Entry, desc: &Desc) -> bool {
    entry.desc.upgrade().is_some_and(|d| Rc::ptr_eq(&d, desc))
}

/// The order key of a ready descriptor: the arrival stamp of a readable stream's
/// oldest bytes, 0 for everything else.
fn arrival(desc: &Desc, have: u32) -> u64 {
    match &desc.borrow().kind {
        Kind::Socket(s) if have & EPOLLIN != 0 => s.arrival(),
        _ => 0,
    }
}

/// The events of `want` that `desc` has now.
pub fn ready(desc: &Desc, want: u32) -> u32 {
    let mut open = desc.borrow_mut();
    let mut have = 0;
    match &mut open.kind {
        Kind::Socket(s) => {
            if want & EPOLLIN != 0 && s.readable() {
                have |= EPOLLIN;
            }
            if want & EPOLLOUT != 0 && s.writable() {
                have |= EPOLLOUT;
            }
        }
        Kind::Pipe(p) => {
            if !p.write && p.readable() {
                have |= EPOLLIN;
            }
            if p.write && p.writable() {
                have |= EPOLLOUT;
            }
        }
        Kind::Pair { rx, tx } => {
            if rx.readable() {
                have |= EPOLLIN;
            }
            if rx.hung_up() {
                have |= EPOLLRDHUP;
            }
            if tx.writable() {
                have |= EPOLLOUT;
            }
        }
        Kind::EventFd(count) => {
            if *count > 0 {
                have |= EPOLLIN;
            }
            have |= EPOLLOUT;
        }
        Kind::Console { output: false } => {}
        Kind::Epoll(_) => {}
        _ => have |= EPOLLIN | EPOLLOUT,
    }
    have & (want | EPOLLERR | EPOLLHUP)
}

/// When a wait of `timeout_ms` ends (`None`: never).
fn deadline_of(timeout_ms: i64) -> Option<u64> {
    (timeout_ms >= 0).then(|| flexos_kernel::time::now_ns() + timeout_ms as u64 * 1_000_000)
}

/// What every round of a readiness wait does first: lets threads that can run do so
/// (a background job may be what makes a descriptor ready, and a wait of 0 must still
/// let them progress), hands queued writes to the stack, and runs the stack when it is
/// in this compartment (an app whose descriptors are always ready never sleeps, and
/// its sends must still leave).
fn start_round() {
    sched::yield_now();
    socket::flush();
    flexos_kernel::gate::poll_once();
}

/// `epoll_wait(epfd, events, max, timeout_ms)` (and `epoll_pwait`, the mask ignored).
pub fn wait(epfd: i64, out: *mut EpollEvent, max: i64, timeout_ms: i64) -> i64 {
    if max <= 0 {
        return -EINVAL;
    }
    if out.is_null() {
        return -EFAULT;
    }
    let deadline = deadline_of(timeout_ms);
    loop {
        start_round();
        let interest: Vec<(i64, Entry)> = match with_epoll(epfd, |e| {
            Ok(e.interest.iter().map(|(&fd, e)| (fd, e.clone())).collect())
        }) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let mut watched = Vec::new();
        let mut fired = Vec::new();
        let mut sending = socket::queued();
        let mut stale = Vec::new();
        for (fd, entry) in interest {
            let desc = match fd::get(fd) {
                Ok(desc) if is_for(&entry, &desc) => desc,
                _ => {
                    stale.push(fd);
                    continue;
                }
            };
            let events = entry.events;
            let mut have = ready(&desc, events);
            if events & EPOLLOUT != 0 && have & EPOLLOUT == 0 {
                sending = true;
            }
            let edges = desc.borrow().edges;
            if events & EPOLLET != 0 {
                if edges.input == entry.seen.input {
                    have &= !EPOLLIN;
                }
                if edges.output == entry.seen.output {
                    have &= !EPOLLOUT;
                }
            }
            if have != 0 {
                fired.push((arrival(&desc, have), fd, entry, have, edges));
            }
            if events & EPOLLIN != 0 {
                watched.push(desc);
            }
        }
        if !stale.is_empty() {
            let _ = with_epoll(epfd, |e| {
                for fd in &stale {
                    e.interest.remove(fd);
                }
                Ok(())
            });
        }
        // Oldest bytes first, as a kernel's ready list has them (clients that send on
        // two connections in turn expect to be served in that order); the sort is
        // stable, so the rest stay in descriptor order.
        fired.sort_by_key(|f| f.0);
        fired.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        for (n, (_, _, entry, have, _)) in fired.iter().enumerate() {
            let event = EpollEvent {
                events: *have,
                data: entry.data,
            };
            // SAFETY: the caller's array holds `max` events; `n < max` (truncated).
            unsafe { out.add(n).write_unaligned(event) };
        }
        let n = fired.len();
        if n > 0 {
            // What was reported: one-shot entries disarm, edge-triggered ones wait for
            // the next edge of what they reported.
            let _ = with_epoll(epfd, |e| {
                for &(_, fd, ref entry, have, edges) in &fired {
                    if let Some(slot) = e.interest.get_mut(&fd) {
                        if entry.events & EPOLLONESHOT != 0 {
                            slot.events = 0;
                        }
                        if have & EPOLLIN != 0 {
                            slot.seen.input = edges.input;
                        }
                        if have & EPOLLOUT != 0 {
                            slot.seen.output = edges.output;
                        }
                    }
                }
                Ok(())
            });
        }
        let now = flexos_kernel::time::now_ns();
        if n > 0 || timeout_ms == 0 || deadline.is_some_and(|d| now >= d) {
            return n as i64;
        }
        socket::watch(watched);
        let step = now
            + if sending {
                RECHECK_SENDING_NS
            } else {
                RECHECK_NS
            };
        sched::block(Wait::Events, Some(deadline.map_or(step, |d| d.min(step))));
    }
}

/// `poll(fds, n, timeout_ms)` (and `ppoll`).
pub fn poll(fds: *mut Pollfd, n: usize, timeout_ms: i64) -> i64 {
    if fds.is_null() && n > 0 {
        return -EFAULT;
    }
    let deadline = deadline_of(timeout_ms);
    loop {
        start_round();
        let mut count = 0;
        let mut watched = Vec::new();
        for i in 0..n {
            // SAFETY: the caller's array holds `n` pollfds.
            let mut p = unsafe { fds.add(i).read() };
            p.revents = 0;
            if p.fd >= 0 {
                match fd::get(i64::from(p.fd)) {
                    Err(_) => p.revents = POLLNVAL,
                    Ok(desc) => {
                        let mut want = 0;
                        if p.events & POLLIN != 0 {
                            want |= EPOLLIN;
                        }
                        if p.events & POLLOUT != 0 {
                            want |= EPOLLOUT;
                        }
                        let have = ready(&desc, want);
                        if have & EPOLLIN != 0 {
                            p.revents |= POLLIN;
                        }
                        if have & EPOLLOUT != 0 {
                            p.revents |= POLLOUT;
                        }
                        watched.push(desc);
                    }
                }
            }
            if p.revents != 0 {
                count += 1;
            }
            // SAFETY: as above.
            unsafe { fds.add(i).write(p) };
        }
        let now = flexos_kernel::time::now_ns();
        if count > 0 || timeout_ms == 0 || deadline.is_some_and(|d| now >= d) {
            return count;
        }
        socket::watch(watched);
        let step = now + RECHECK_NS;
        sched::block(Wait::Events, Some(deadline.map_or(step, |d| d.min(step))));
    }
}
