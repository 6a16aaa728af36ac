//! The `sock` server: the gate side of the stack (listen, accept, send, close, the
//! event word and counters). Received bytes never cross here: see the rings.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use flexos_kernel::gate;
use flexos_kernel::rpc::{SharedBuf, SharedBytes};
use flexos_kernel::time;
use smoltcp::socket::tcp;

use super::{Closing, Conn, LISTENING, LOCAL_RING, MIN_RING, Net, Port, RING_SIZES, Stack};
use crate::batch;
use crate::codes::*;
use crate::lockout::{Ring, SynQueue};
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
        if n == 0 {
            return E_AGAIN;
        }
        if let Some(c) = self.conn(conn) {
            c.last_active = time::now_ns();
        }
        n as i64
    }

    /// A ring for an admitted connection: the largest the heap has room for beside
    /// the pool's floor, else a floor ring. (`None`: the connection keeps its slot.)
    fn new_ring(&mut self) -> Option<(Ring<SharedBuf>, Writer<'static>)> {
        let client = self.client_component;
        let largest = if self.remote { usize::MAX } else { LOCAL_RING };
        let ring = self.pool.ring(|| {
            RING_SIZES
                .iter()
                .filter(|&&size| size <= largest && size > MIN_RING)
                .find_map(|&size| gate::shared_alloc(client, ring::buffer_len(size)))
        })?;
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
            };
            let slot = match s.conns.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    s.conns.push(None);
                    s.conns.len() - 1
                }
            };
            s.conns[slot] = Some(conn);
            slot as i64
        })
    }

    fn ring(&self, conn: i64) -> SharedBuf {
        let mut out = SharedBuf::from_parts(0, 0);
        self.with(|s| {
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
            s.give_back(c.ring);
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
