//! The `sock` server: the gate side of the stack (listen, accept, send, close, the
//! event word and counters). Received bytes never cross here: see the rings.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use flexos_kernel::gate;
use flexos_kernel::rpc::{SharedBuf, SharedBytes};
use flexos_kernel::time;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};

use super::{
    Closing, Conn, LISTENING, LOCAL_RING, MIN_RING, Net, Port, RING_MARGIN, RING_SIZES, Stack,
    UDP_ENDS, UDP_PACKETS, UDP_RING, UdpEnd,
};
use crate::batch;
use crate::codes::*;
use crate::lockout::{Ring, SynQueue, fair_ring};
use crate::ring::{self, Writer};
use crate::sock;

impl Stack {
    /// Queues `len` bytes of `bytes` from `at` on connection `conn`: how many its send
    /// buffer took, `E_AGAIN` if it had no room, or a negative code.
    fn send_from(&mut self, conn: i64, bytes: &SharedBytes<'_>, at: usize, len: usize) -> i64 {
        let handle = match self.conn_socket(conn) {
            Ok(h) => h,
            Err(e) => return e,
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(handle);
        if !sock.may_send() {
            return E_CLOSED;
        }
        let n = sock
            .send(|space| {
                let n = space.len().min(len);
                if bytes.copy_out(at, &mut space[..n]).is_err() {
                    return (0, 0);
                }
                (n, n)
            })
            .unwrap_or(0);
        let room = sock.send_capacity() - sock.send_queue();
        if let Some(c) = self.conn(conn) {
            // The room word is right when the call returns (not at the next poll
            // round), so a sender that finds it short waits instead of asking again.
            if let Some(w) = &c.writer {
                w.set_send_room(room as u64);
                c.room_shown = room;
            }
            if n > 0 {
                c.last_active = time::now_ns();
            }
        }
        if n == 0 {
            return E_AGAIN;
        }
        n as i64
    }

    /// The ring size every connection gets when `conns` share the heap
    /// ([`fair_ring`]); `None`: floor rings. The budget is the heap's free bytes, less
    /// [`RING_MARGIN`], plus the larger rings the open connections hold (and the ones
    /// they are moving out of): what the connections would have if each held a floor
    /// ring.
    fn fair_size(&self, conns: usize) -> Option<usize> {
        let largest = if self.remote { usize::MAX } else { LOCAL_RING };
        let largest = largest.min(self.ring_cap.1);
        let mut budget = gate::shared_available(self.client_component).saturating_sub(RING_MARGIN);
        for c in self.conns.iter().flatten() {
            if let (Ring::Big(b), false) = (c.ring, c.ended) {
                budget += b.len() as usize;
            }
            if let Some(Ring::Big(b)) = c.old {
                budget += b.len() as usize;
            }
        }
        fair_ring(&RING_SIZES, largest, budget, conns, ring::buffer_len)
            .filter(|&size| size > MIN_RING)
    }

    /// Connections whose rings share the heap: the ones whose stream is still open
    /// (an ended one's ring keeps its last bytes for the app, and cannot move).
    fn open_conns(&self) -> usize {
        self.conns.iter().flatten().filter(|c| !c.ended).count()
    }

    /// A ring of `size` data bytes (`None`: a floor ring) with its writer. With
    /// `floor_fallback` a floor ring stands in when the heap has no room.
    fn make_ring(
        &mut self,
        size: Option<usize>,
        floor_fallback: bool,
    ) -> Option<(Ring<SharedBuf>, Writer<'static>)> {
        let client = self.client_component;
        let big = size.and_then(|size| gate::shared_alloc(client, ring::buffer_len(size)));
        let ring = match big {
            Some(b) => Ring::Big(b),
            None if floor_fallback || size.is_none() => self.pool.ring(|| None)?,
            None => return None,
        };
        match gate::bytes(ring.buffer())
            .ok()
            .and_then(|b| Writer::create(b).ok())
        {
            Some(writer) => Some((ring, writer)),
            None => {
                if let Some(big) = self.pool.put_back(ring) {
                    let _ = gate::shared_free(big);
                }
                None
            }
        }
    }

    /// A ring for an admitted connection: its fair share with it counted, else a
    /// floor ring. (`None`: the connection keeps its slot.)
    fn new_ring(&mut self) -> Option<(Ring<SharedBuf>, Writer<'static>)> {
        let size = self.fair_size(self.open_conns() + 1);
        self.make_ring(size, true)
    }

    /// Gives every open connection a ring of the fair size ([`Stack::fair_size`]):
    /// shrinking ones first (a floor ring when the heap has no room yet), so that
    /// their old rings, once the app has read them out, make room for the growing
    /// ones. A connection moves again only after the app took its last move. Returns
    /// whether a ring moved (the app must hear of it).
    pub(super) fn resize_rings(&mut self) -> bool {
        let open = self.open_conns();
        if self.ring_cap.0 != open {
            self.ring_cap = (open, usize::MAX);
        }
        let target = self.fair_size(open);
        let want = target.unwrap_or(MIN_RING);
        let mut moved = false;
        let mut stuck = false;
        for shrink in [true, false] {
            for id in 0..self.conns.len() {
                let Some(c) = self.conns[id].as_ref() else {
                    continue;
                };
                let Some(w) = c.writer.as_ref() else {
                    continue;
                };
                if c.ended || c.old.is_some() || c.handle.is_none() {
                    continue;
                }
                let have = w.capacity();
                if have == want || (have > want) != shrink {
                    continue;
                }
                let Some((ring, writer)) = self.make_ring(target, shrink) else {
                    // No room yet: retried when an old ring is freed.
                    stuck = true;
                    continue;
                };
                let Some(c) = self.conns[id].as_mut() else {
                    continue;
                };
                if let Some(old) = c.writer.replace(writer) {
                    old.close(ring::MOVED);
                }
                c.old = Some(core::mem::replace(&mut c.ring, ring));
                c.waiting_space = false;
                // The new ring's word is 0 until the next round publishes it.
                c.room_shown = 0;
                moved = true;
            }
        }
        let moving = self.conns.iter().flatten().any(|c| c.old.is_some());
        if stuck
            && !moving
            && let Some(size) = target
        {
            // Every old ring is freed and the fair size still does not fit: the heap
            // is fragmented. One size down for all, until the count changes.
            self.ring_cap = (open, size / 2);
            self.rebalance = true;
        }
        moved
    }

    /// UDP endpoint `id`, if open.
    fn udp(&mut self, id: i64) -> Option<&mut UdpEnd> {
        self.udps.get_mut(usize::try_from(id).ok()?)?.as_mut()
    }

    /// Frees the ring connection `id` moved out of, once the app has taken the new one.
    fn free_old(&mut self, id: i64) {
        let old = self.conn(id).and_then(|c| c.old.take());
        if let Some(old) = old {
            if let Some(big) = self.pool.put_back(old) {
                let _ = gate::shared_free(big);
            }
            self.rebalance = true;
        }
    }

    /// Makes socket `handle` (admitted to the pool: a slot is its) a connection with
    /// its ring; its id, or `E_NO_MEMORY` (the socket is reset, the slot freed).
    fn adopt(&mut self, handle: SocketHandle) -> i64 {
        let s = self;
        let Some((ring, writer)) = s.new_ring() else {
            s.pool.release(None);
            s.reset(handle, time::now_ns());
            return E_NO_MEMORY;
        };
        let conn = Conn {
            handle: Some(handle),
            ring,
            writer: Some(writer),
            ended: false,
            waiting_space: false,
            last_active: time::now_ns(),
            evicted: false,
            old: None,
            room_shown: 0,
            tx: None,
        };
        let slot = match s.conns.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                s.conns.push(None);
                s.conns.len() - 1
            }
        };
        s.conns[slot] = Some(conn);
        s.rebalance = true;
        slot as i64
    }

    /// Hands a connection's ring back to the pool (freeing it if it was not a floor
    /// ring) and frees its slot.
    fn give_back(&mut self, ring: Ring<SharedBuf>) {
        if let Some(big) = self.pool.release(Some(ring)) {
            let _ = gate::shared_free(big);
        }
    }
}

impl sock::Api for Net {
    fn listen(&self, port: u16) -> i64 {
        self.with(|s| {
            if port == 0 || s.ports.iter().any(|p| p.port == port) {
                return E_PORT;
            }
            // In the list first: the socket budget counts the ports.
            s.ports.push(Port {
                port,
                listening: Vec::new(),
                half_open: SynQueue::new(s.limits.syn_queue),
                ready: VecDeque::new(),
                flooding: false,
            });
            let i = s.ports.len() - 1;
            for _ in 0..LISTENING {
                match s.listener(port) {
                    Some(h) => s.ports[i].listening.push(h),
                    None => {
                        for h in core::mem::take(&mut s.ports[i].listening) {
                            s.retire(h);
                        }
                        s.ports.pop();
                        return E_NO_MEMORY;
                    }
                }
            }
            i as i64
        })
    }

    fn accept(&self, listener: i64) -> i64 {
        self.with(|s| {
            let Some(port) = usize::try_from(listener)
                .ok()
                .and_then(|i| s.ports.get_mut(i))
            else {
                return E_BAD_ID;
            };
            // Established and admitted to the pool: a slot is its.
            let Some(handle) = port.ready.pop_front() else {
                return E_AGAIN;
            };
            s.adopt(handle)
        })
    }

    fn connect(&self, dest: i64) -> i64 {
        self.with(|s| {
            let Some((addr, port)) = crate::datagram::split(dest) else {
                return E_BAD_BUFFER;
            };
            if port == 0 {
                return E_PORT;
            }
            if !s.pool.admit() {
                return E_NO_MEMORY;
            }
            let to =
                smoltcp::wire::IpEndpoint::new(smoltcp::wire::Ipv4Address::from(addr).into(), port);
            let Some(handle) = s.connecting(to) else {
                s.pool.release(None);
                return E_NO_MEMORY;
            };
            s.adopt(handle)
        })
    }

    fn ring(&self, conn: i64) -> SharedBuf {
        let mut out = SharedBuf::from_parts(0, 0);
        self.with(|s| {
            // Asked again after a move: the app has read the old ring to its end.
            s.free_old(conn);
            if let Some(c) = s.conn(conn) {
                out = c.ring.buffer();
            }
            0
        });
        out
    }

    fn send(&self, conn: i64, buf: SharedBuf) -> i64 {
        self.with(|s| {
            let Ok(bytes) = gate::bytes(buf) else {
                return E_BAD_BUFFER;
            };
            s.send_from(conn, &bytes, 0, bytes.len())
        })
    }

    fn send_batch(&self, buf: SharedBuf) -> i64 {
        self.with(|s| {
            let Ok(bytes) = gate::bytes(buf) else {
                return E_BAD_BUFFER;
            };
            let (mut at, mut count) = (0, 0);
            while let Some(e) = batch::entry(&bytes, at) {
                let r = s.send_from(e.conn, &bytes, e.data, e.len);
                batch::set_result(&bytes, at, if r == E_AGAIN { 0 } else { r });
                at = e.next;
                count += 1;
            }
            count
        })
    }

    fn send_ring(&self, conn: i64, buf: SharedBuf) -> i64 {
        self.with(|s| {
            let Ok(bytes) = gate::bytes(buf) else {
                return E_BAD_BUFFER;
            };
            let Ok(reader) = ring::Reader::open(bytes) else {
                return E_BAD_BUFFER;
            };
            match s.conn(conn) {
                Some(c) => {
                    c.tx = Some(reader);
                    0
                }
                None => E_BAD_ID,
            }
        })
    }

    fn udp_open(&self, port: u16) -> i64 {
        self.with(|s| {
            if port == 0
                || s.udps
                    .iter()
                    .flatten()
                    .any(|u| s.sockets.get::<udp::Socket>(u.handle).endpoint().port == port)
            {
                return E_PORT;
            }
            if s.udps.iter().flatten().count() >= UDP_ENDS {
                return E_NO_MEMORY;
            }
            let buffer = |packets: usize| -> Option<udp::PacketBuffer<'static>> {
                let mut meta = Vec::new();
                meta.try_reserve_exact(packets).ok()?;
                meta.resize(packets, udp::PacketMetadata::EMPTY);
                Some(udp::PacketBuffer::new(meta, super::zeroed(UDP_RING)?))
            };
            let (Some(rx), Some(tx)) = (buffer(UDP_PACKETS), buffer(UDP_PACKETS)) else {
                return E_NO_MEMORY;
            };
            let mut sock = udp::Socket::new(rx, tx);
            if sock.bind(port).is_err() {
                return E_PORT;
            }
            // Smaller when the heap is short (the 3-compartment split's arenas).
            let client = s.client_component;
            let Some(ring) = [UDP_RING, UDP_RING / 4, UDP_RING / 16]
                .iter()
                .find_map(|&size| gate::shared_alloc(client, ring::buffer_len(size)))
            else {
                return E_NO_MEMORY;
            };
            let Some(writer) = gate::bytes(ring).ok().and_then(|b| Writer::create(b).ok()) else {
                let _ = gate::shared_free(ring);
                return E_NO_MEMORY;
            };
            let handle = s.sockets.add(sock);
            let end = UdpEnd {
                handle,
                ring,
                writer,
            };
            match s.udps.iter().position(Option::is_none) {
                Some(i) => {
                    s.udps[i] = Some(end);
                    i as i64
                }
                None => {
                    s.udps.push(Some(end));
                    s.udps.len() as i64 - 1
                }
            }
        })
    }

    fn udp_ring(&self, udp: i64) -> SharedBuf {
        let mut out = SharedBuf::from_parts(0, 0);
        self.with(|s| {
            if let Some(u) = s.udp(udp) {
                out = u.ring;
            }
            0
        });
        out
    }

    fn udp_send(&self, udp: i64, dest: i64, buf: SharedBuf) -> i64 {
        self.with(|s| {
            let Some((addr, port)) = crate::datagram::split(dest) else {
                return E_BAD_BUFFER;
            };
            let Ok(bytes) = gate::bytes(buf) else {
                return E_BAD_BUFFER;
            };
            let Some(handle) = s.udp(udp).map(|u| u.handle) else {
                return E_BAD_ID;
            };
            let mut data = alloc::vec![0u8; bytes.len()];
            if bytes.copy_out(0, &mut data).is_err() {
                return E_BAD_BUFFER;
            }
            let to =
                smoltcp::wire::IpEndpoint::new(smoltcp::wire::Ipv4Address::from(addr).into(), port);
            match s
                .sockets
                .get_mut::<udp::Socket>(handle)
                .send_slice(&data, to)
            {
                Ok(()) => data.len() as i64,
                Err(udp::SendError::BufferFull) => E_AGAIN,
                Err(_) => E_BAD_BUFFER,
            }
        })
    }

    fn udp_close(&self, udp: i64) -> i64 {
        self.with(|s| {
            let Some(u) = usize::try_from(udp)
                .ok()
                .and_then(|i| s.udps.get_mut(i))
                .and_then(Option::take)
            else {
                return E_BAD_ID;
            };
            s.sockets.remove(u.handle);
            let _ = gate::shared_free(u.ring);
            0
        })
    }

    fn close(&self, conn: i64) -> i64 {
        self.with(|s| {
            let Some(c) = usize::try_from(conn)
                .ok()
                .and_then(|i| s.conns.get_mut(i))
                .and_then(Option::take)
            else {
                return E_BAD_ID;
            };
            let now = time::now_ns();
            let mut c = c;
            if let (Some(h), Some(tx)) = (c.handle, c.tx.as_mut()) {
                // What the app wrote before closing, as far as the socket takes it.
                let _ = super::pull_sends(s.sockets.get_mut::<tcp::Socket>(h), tx);
            }
            if let Some(h) = c.handle {
                // FIN after what is queued; smoltcp keeps the socket until it is
                // closed, and it is let go of then (`tend_closing`).
                s.sockets.get_mut::<tcp::Socket>(h).close();
                s.closing.push(Closing {
                    handle: h,
                    since: now,
                    aborted: false,
                });
            }
            if c.evicted {
                s.evicted_unclosed -= 1;
            }
            // The app has let go of the ring: it may serve another connection.
            if let Some(old) = c.old
                && let Some(big) = s.pool.put_back(old)
            {
                let _ = gate::shared_free(big);
            }
            s.give_back(c.ring);
            s.rebalance = true;
            s.tend_closing(now);
            0
        })
    }

    fn events(&self) -> SharedBuf {
        let mut out = SharedBuf::from_parts(0, 0);
        self.with(|s| {
            out = s.events;
            0
        });
        out
    }

    fn closing(&self) -> i64 {
        self.with(|s| {
            s.tend_closing(time::now_ns());
            s.closing.len() as i64
        })
    }

    fn stat(&self, which: u16) -> i64 {
        self.with(|s| {
            let nic = s.link.stats();
            let ep = gate::endpoint().stats();
            let v = match which {
                0 => nic.rx_frames,
                1 => nic.rx_bytes,
                2 => nic.tx_frames,
                3 => s.link.kicks(),
                4 => ep.sleeps,
                5 => ep.doorbells,
                6 => s.stack_cycles,
                7 => s.ring_cycles,
                8 => s.counters.half_open_dropped,
                9 => s.counters.half_open_timed_out,
                10 => s.counters.idle_resets,
                11 => s.counters.refused,
                _ => return E_BAD_ID,
            };
            v as i64
        })
    }

    fn pending(&self, conn: i64) -> i64 {
        self.with(|s| match s.conn_socket(conn) {
            Ok(h) => s.sockets.get::<tcp::Socket>(h).send_queue() as i64,
            Err(E_CLOSED) => 0,
            Err(e) => e,
        })
    }

    fn peer(&self, conn: i64) -> i64 {
        self.with(|s| match s.conn_socket(conn) {
            Ok(h) => match s.sockets.get::<tcp::Socket>(h).remote_endpoint() {
                Some(ep) => match ep.addr {
                    smoltcp::wire::IpAddress::Ipv4(ip) => {
                        (i64::from(u32::from_be_bytes(ip.octets())) << 16) | i64::from(ep.port)
                    }
                },
                None => E_CLOSED,
            },
            Err(e) => e,
        })
    }
}
