//! The `sock` server: the gate side of the stack (listen, accept, send, close, the
//! event word and counters). Received bytes never cross here: see the rings.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use flexos_kernel::gate;
use flexos_kernel::rpc::SharedBuf;
use smoltcp::socket::tcp;

use super::{Conn, LISTENING, LOCAL_RING, Listener, Net, RING_SIZES, new_listener};
use crate::codes::*;
use crate::ring::{self, Writer};
use crate::sock;

impl sock::Api for Net {
    fn listen(&self, port: u16) -> i64 {
        self.with(|s| {
            if port == 0 || s.listeners.iter().any(|l| l.port == port) {
                return E_PORT;
            }
            let mut listening = Vec::new();
            for _ in 0..LISTENING {
                match new_listener(&mut s.sockets, port) {
                    Some(h) => listening.push(h),
                    None => {
                        for h in listening {
                            s.sockets.remove(h);
                        }
                        return E_NO_MEMORY;
                    }
                }
            }
            s.listeners.push(Listener {
                port,
                listening,
                ready: VecDeque::new(),
            });
            (s.listeners.len() - 1) as i64
        })
    }

    fn accept(&self, listener: i64) -> i64 {
        self.with(|s| {
            let Some(l) = usize::try_from(listener)
                .ok()
                .and_then(|i| s.listeners.get_mut(i))
            else {
                return E_BAD_ID;
            };
            let Some(handle) = l.ready.pop_front() else {
                return E_AGAIN;
            };
            let client = s.client_component;
            let largest = if s.remote { usize::MAX } else { LOCAL_RING };
            let buf = RING_SIZES
                .iter()
                .filter(|&&size| size <= largest)
                .find_map(|&size| gate::shared_alloc(client, ring::buffer_len(size)));
            let Some(buf) = buf else {
                s.sockets.get_mut::<tcp::Socket>(handle).abort();
                return E_NO_MEMORY;
            };
            let writer = gate::bytes(buf).ok().and_then(|b| Writer::create(b).ok());
            let Some(writer) = writer else {
                let _ = gate::shared_free(buf);
                return E_NO_MEMORY;
            };
            let conn = Conn {
                handle,
                ring: buf,
                writer: Some(writer),
                ended: false,
                waiting_space: false,
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
                out = c.ring;
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
            let Some(handle) = s.conn(conn).map(|c| c.handle) else {
                return E_BAD_ID;
            };
            let sock = s.sockets.get_mut::<tcp::Socket>(handle);
            if !sock.may_send() {
                return E_CLOSED;
            }
            let n = sock
                .send(|space| {
                    let n = space.len().min(bytes.len());
                    if bytes.copy_out(0, &mut space[..n]).is_err() {
                        return (0, 0);
                    }
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 { E_AGAIN } else { n as i64 }
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
            // FIN after what is queued; smoltcp keeps the socket until it is closed,
            // and it is reaped then (`reap`).
            s.sockets.get_mut::<tcp::Socket>(c.handle).close();
            let _ = gate::shared_free(c.ring);
            s.closing(c.handle);
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
            s.reap();
            s.reap_list.len() as i64
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
                _ => return E_BAD_ID,
            };
            v as i64
        })
    }

    fn pending(&self, conn: i64) -> i64 {
        self.with(|s| {
            let Some(handle) = s.conn(conn).map(|c| c.handle) else {
                return E_BAD_ID;
            };
            s.sockets.get::<tcp::Socket>(handle).send_queue() as i64
        })
    }
}
