//! The app's side of the `sock` interface: [`Sockets`], [`Listener`], [`Conn`].
//!
//! Control (listen, accept, send, close) goes through the generated client (a direct
//! call when net shares the compartment, a gate call otherwise); received bytes are
//! read out of each connection's ring without a gate call. [`Sockets::wait`] blocks
//! until a condition on shared words holds (`gate::wait_until`: it pumps the stack
//! itself when net is here, or sleeps until net wakes it).

use core::sync::atomic::{Ordering, fence};

use flexos_kernel::components::compartment_of;
use flexos_kernel::gate::{self, GateRouter, router};
use flexos_kernel::rpc::{IdlePolicy, SharedBuf, SharedBytes};

use crate::codes::{E_AGAIN, E_BAD_BUFFER, E_BUSY, E_CLOSED, E_NO_MEMORY};
use crate::ring::{self, MOVED, OPEN, Reader, Writer};
use crate::sock;
use crate::stack::Net;

/// Idle rounds an app spins waiting for data before it sleeps. Measured with iperf2 in
/// 2 compartments (128 KiB writes): 5.8-5.9 Gbit/s with 150 rounds against 4.4-4.9
/// with the gate policy's 1500: the waiting vCPU takes a host core the stack's
/// compartment and the device thread need.
pub const WAIT_SPIN_ROUNDS: u32 = 150;

/// Size of the shared buffer sends are copied through.
const SEND_CHUNK: usize = 16 << 10;
/// Sizes tried for the shared buffer batched sends are copied through, largest first
/// (the heap of a 3-compartment run is smaller): a sender queues this much per gate
/// call, and with the stack in another compartment each call is a hand-over between
/// two vCPUs that may share a host core.
const BATCH_BYTES: [usize; 2] = [256 << 10, 64 << 10];

/// The socket interface of one `net` component.
pub struct Sockets {
    api: sock::Client<'static, Net, GateRouter>,
    /// The stack and its component, for the connections' own calls (a moved ring).
    server: &'static Net,
    component: u16,
    events: SharedBytes<'static>,
    net: u32,
    send_buf: SharedBuf,
    batch_buf: SharedBuf,
    wait_spin: u32,
}

/// A listening port.
#[derive(Clone, Copy, Debug)]
pub struct Listener(i64);

/// A UDP endpoint: datagrams arrive in its ring (no gate call to read one).
pub struct Udp {
    id: i64,
    reader: Reader<'static>,
}

/// A datagram [`Udp::try_recv`] copied: its length (it was cut to the buffer if
/// longer), the sender's address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub addr: [u8; 4],
    pub port: u16,
}

/// A connection.
pub struct Conn {
    id: i64,
    reader: Reader<'static>,
    server: &'static Net,
    component: u16,
    net: u32,
    /// The stack shares this compartment: nobody else runs it.
    local: bool,
    /// Closed with [`Sockets::close_now`]: its id and ring are the stack's again, so
    /// nothing is read from the ring any more.
    closed: bool,
    /// The send ring ([`Sockets::stream`]), once made: ours to write, the stack's
    /// to read, freed after the stack let go of it at close.
    tx: Option<Tx>,
}

/// A connection's send ring on the app's side.
struct Tx {
    writer: Writer<'static>,
    buf: SharedBuf,
    /// We asked the stack to wake us (`wake_at`) when the ring was full.
    waiting: bool,
}

/// Data bytes of a send ring, larger first (the heap may be short). One size for all,
/// so parallel senders are served alike; the socket's own send buffer (1 MiB for
/// iperf) holds what is in flight.
const SEND_RINGS: [usize; 2] = [256 << 10, 64 << 10];

/// What a non-blocking receive found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// This many bytes were copied.
    Data(usize),
    /// Nothing yet.
    Empty,
    /// The peer ended the stream (after every byte it sent was read).
    End,
}

/// A gate failure or a negative code, as the code.
fn code<T>(r: Result<T, flexos_kernel::rpc::GateError>) -> Result<T, i64> {
    r.map_err(|_| crate::codes::E_NO_DEVICE)
}

/// How long a call is retried while the stack is busy.
const BUSY_NS: u64 = 1_000_000_000;

/// Runs `call` until it is not refused with `E_BUSY`: the stack's compartment serves
/// our calls while it waits for one of its own (to the driver in a third compartment),
/// and refuses the ones that arrive while its state is in use. `busy` says whether a
/// result is such a refusal.
fn retry<T>(
    mut call: impl FnMut() -> Result<T, flexos_kernel::rpc::GateError>,
    busy: impl Fn(&Result<T, flexos_kernel::rpc::GateError>) -> bool,
) -> Result<T, flexos_kernel::rpc::GateError> {
    let deadline = flexos_kernel::time::now_ns().saturating_add(BUSY_NS);
    loop {
        let r = call();
        if !busy(&r) || flexos_kernel::time::now_ns() > deadline {
            return r;
        }
        core::hint::spin_loop();
    }
}

/// An `i64` result refused as busy.
fn busy_code(r: &Result<i64, flexos_kernel::rpc::GateError>) -> bool {
    matches!(r, Ok(E_BUSY))
}

/// A handle result refused (the stack answers an empty handle when busy).
fn busy_handle(r: &Result<SharedBuf, flexos_kernel::rpc::GateError>) -> bool {
    r.is_err() || matches!(r, Ok(b) if b.is_empty())
}

/// The reader of connection `id`'s ring (now: after a move, the new one).
fn ring_of(api: &sock::Client<'static, Net, GateRouter>, id: i64) -> Result<Reader<'static>, i64> {
    let ring = code(retry(|| api.ring(id), busy_handle))?;
    let bytes = gate::bytes(ring).map_err(|_| E_BAD_BUFFER)?;
    Reader::open(bytes).map_err(|_| E_BAD_BUFFER)
}

impl Sockets {
    /// Connects to the `net` component `component`, served by `server`.
    pub fn new(server: &'static sock::Server<Net>, component: u16) -> Result<Sockets, i64> {
        let api = sock::Client::new(router(), component, &server.0);
        // Starts the stack; says why it cannot (no device) with a code.
        let started = code(retry(|| api.stat(0), busy_code))?;
        if started < 0 {
            return Err(started);
        }
        let events = code(retry(|| api.events(), busy_handle))?;
        let events = gate::bytes(events).map_err(|_| E_BAD_BUFFER)?;
        let send_buf = gate::shared_alloc(component, SEND_CHUNK).ok_or(E_NO_MEMORY)?;
        let batch_buf = BATCH_BYTES
            .iter()
            .find_map(|&len| gate::shared_alloc(component, len))
            .ok_or(E_NO_MEMORY)?;
        Ok(Sockets {
            api,
            server: &server.0,
            component,
            events,
            net: compartment_of(component),
            send_buf,
            batch_buf,
            wait_spin: flexos_kernel::Args::of_run()
                .get("net.waitspin")
                .and_then(|t| t.parse().ok())
                .unwrap_or(WAIT_SPIN_ROUNDS),
        })
    }

    /// Listens on `port`.
    pub fn listen(&self, port: u16) -> Result<Listener, i64> {
        match code(retry(|| self.api.listen(port), busy_code))? {
            id if id >= 0 => Ok(Listener(id)),
            e => Err(e),
        }
    }

    /// The event counter (changes on every new connection and end of stream).
    pub fn events(&self) -> u64 {
        self.events.load_u64(0).unwrap_or(0)
    }

    /// A connection that arrived on `l`, if any.
    pub fn try_accept(&self, l: Listener) -> Result<Option<Conn>, i64> {
        let id = code(retry(|| self.api.accept(l.0), busy_code))?;
        if id == E_AGAIN {
            return Ok(None);
        }
        if id < 0 {
            return Err(id);
        }
        let reader = ring_of(&self.api, id)?;
        Ok(Some(Conn {
            id,
            reader,
            server: self.server,
            component: self.component,
            net: self.net,
            local: self.net == flexos_kernel::compartment_id(),
            closed: false,
            tx: None,
        }))
    }

    /// Waits until `ready()` holds; `ready` may only look at shared words (ring
    /// indices, the event counter), not make gate calls.
    ///
    /// Spins at most [`WAIT_SPIN_ROUNDS`] rounds before sleeping (`net.waitspin=N`).
    pub fn wait(&self, ready: impl Fn() -> bool) {
        let ep = gate::endpoint();
        let saved = ep.idle_policy();
        ep.set_idle_policy(IdlePolicy {
            spin_rounds: saved.spin_rounds.min(self.wait_spin),
            ..saved
        });
        gate::wait_until(ready);
        ep.set_idle_policy(saved);
    }

    /// Sends all of `data` (waiting for room in the send buffer).
    pub fn send(&self, conn: &Conn, mut data: &[u8]) -> Result<(), i64> {
        let bytes = gate::bytes(self.send_buf).map_err(|_| E_BAD_BUFFER)?;
        while !data.is_empty() {
            let n = data.len().min(SEND_CHUNK);
            bytes.copy_in(0, &data[..n]).map_err(|_| E_BAD_BUFFER)?;
            let chunk = self.send_buf.slice(0, n as u32).ok_or(E_BAD_BUFFER)?;
            match code(retry(|| self.api.send(conn.id, chunk), busy_code))? {
                E_AGAIN => {
                    // The stack frees room as the peer acknowledges: let it run
                    // (here, or in its own compartment), then retry.
                    gate::poll_once();
                    core::hint::spin_loop();
                }
                taken if taken > 0 => data = &data[(taken as usize).min(n)..],
                e => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues as much of `data` as the send buffer takes now (at most one chunk of the
    /// shared send buffer, 16 KiB): the bytes taken, 0 if the buffer is full. For
    /// non-blocking sockets; [`Sockets::send`] waits for room instead.
    pub fn try_send(&self, conn: &Conn, data: &[u8]) -> Result<usize, i64> {
        let bytes = gate::bytes(self.send_buf).map_err(|_| E_BAD_BUFFER)?;
        let n = data.len().min(SEND_CHUNK);
        if n == 0 {
            return Ok(0);
        }
        bytes.copy_in(0, &data[..n]).map_err(|_| E_BAD_BUFFER)?;
        let chunk = self.send_buf.slice(0, n as u32).ok_or(E_BAD_BUFFER)?;
        match code(retry(|| self.api.send(conn.id, chunk), busy_code))? {
            E_AGAIN => Ok(0),
            taken if taken >= 0 => Ok((taken as usize).min(n)),
            e => Err(e),
        }
    }

    /// Data bytes one [`Sockets::send_batch`] call carries at most, all entries together
    /// (less their headers).
    pub fn batch_capacity(&self) -> usize {
        self.batch_buf.len() as usize
    }

    /// Queues the bytes of many connections in one call ([`crate::batch`]): for the
    /// first items (as many as the shared buffer holds; the last maybe in part), what
    /// the stack took of each (0: its send buffer is full) or a negative code.
    pub fn send_batch(&self, items: &[(&Conn, &[u8])]) -> Result<alloc::vec::Vec<i64>, i64> {
        let bytes = gate::bytes(self.batch_buf).map_err(|_| E_BAD_BUFFER)?;
        let ids: alloc::vec::Vec<(i64, &[u8])> = items.iter().map(|(c, d)| (c.id, *d)).collect();
        let put = crate::batch::encode(&bytes, &ids);
        if put.is_empty() {
            return Ok(alloc::vec::Vec::new());
        }
        let read = code(retry(|| self.api.send_batch(self.batch_buf), busy_code))?;
        if read < 0 {
            return Err(read);
        }
        let mut results = crate::batch::results(&bytes, put.len().min(read as usize));
        // Never more than was put in (the stack's answer is not trusted blindly).
        for (r, &n) in results.iter_mut().zip(&put) {
            *r = (*r).min(n as i64);
        }
        Ok(results)
    }

    /// Closes `conn` (FIN after queued bytes).
    pub fn close(&self, mut conn: Conn) -> Result<(), i64> {
        self.close_now(&mut conn)
    }

    /// Closes `conn` (FIN after queued bytes) while the caller keeps the value (for
    /// its figures): from then on it reads as ended, never touching the ring the
    /// stack took back. Closing it again does nothing.
    pub fn close_now(&self, conn: &mut Conn) -> Result<(), i64> {
        if conn.closed {
            return Ok(());
        }
        conn.closed = true;
        let r = code(retry(|| self.api.close(conn.id), busy_code));
        if let Some(tx) = conn.tx.take()
            && matches!(r, Ok(0))
        {
            // The stack has let go of it (close answered): ours to free.
            let _ = gate::shared_free(tx.buf);
        }
        match r? {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// Opens a TCP connection to `addr`:`port` (`sock::connect`): the connection at
    /// once, its handshake under way; what is streamed to it goes once it completes,
    /// and a refused one reads as ended.
    pub fn connect(&self, addr: [u8; 4], port: u16) -> Result<Conn, i64> {
        let dest = crate::datagram::endpoint(addr, port);
        let id = code(retry(|| self.api.connect(dest), busy_code))?;
        if id < 0 {
            return Err(id);
        }
        let reader = ring_of(&self.api, id)?;
        Ok(Conn {
            id,
            reader,
            server: self.server,
            component: self.component,
            net: self.net,
            local: self.net == flexos_kernel::compartment_id(),
            closed: false,
            tx: None,
        })
    }

    /// Opens a UDP endpoint on `port`.
    pub fn udp_open(&self, port: u16) -> Result<Udp, i64> {
        let id = code(retry(|| self.api.udp_open(port), busy_code))?;
        if id < 0 {
            return Err(id);
        }
        let ring = code(retry(|| self.api.udp_ring(id), busy_handle))?;
        let reader = gate::bytes(ring)
            .ok()
            .and_then(|b| Reader::open(b).ok())
            .ok_or(E_BAD_BUFFER)?;
        Ok(Udp { id, reader })
    }

    /// Sends `data` as one datagram from `udp` to `addr`:`port`; `Ok(false)` when the
    /// stack's send queue is full (try again later).
    pub fn udp_send(&self, udp: &Udp, addr: [u8; 4], port: u16, data: &[u8]) -> Result<bool, i64> {
        if data.len() > SEND_CHUNK {
            return Err(E_BAD_BUFFER);
        }
        let bytes = gate::bytes(self.send_buf).map_err(|_| E_BAD_BUFFER)?;
        bytes.copy_in(0, data).map_err(|_| E_BAD_BUFFER)?;
        let chunk = self
            .send_buf
            .slice(0, data.len() as u32)
            .ok_or(E_BAD_BUFFER)?;
        let to = crate::datagram::endpoint(addr, port);
        match code(retry(|| self.api.udp_send(udp.id, to, chunk), busy_code))? {
            E_AGAIN => Ok(false),
            n if n >= 0 => Ok(true),
            e => Err(e),
        }
    }

    /// Closes `udp`.
    pub fn udp_close(&self, udp: Udp) -> Result<(), i64> {
        match code(retry(|| self.api.udp_close(udp.id), busy_code))? {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// Writes as much of `data` as fits into `conn`'s send ring (made and handed to
    /// the stack on first use, `sock::send_ring`): no gate call, the stack moves the
    /// bytes into the socket between calls. Returns the bytes taken; 0 when the ring
    /// is full, and then the stack wakes us once half of it is free (wait on
    /// [`Conn::send_space`]).
    pub fn stream(&self, conn: &mut Conn, data: &[u8]) -> Result<usize, i64> {
        if conn.closed {
            return Err(E_CLOSED);
        }
        if conn.tx.is_none() {
            let buf = SEND_RINGS
                .iter()
                .find_map(|&size| gate::shared_alloc(self.component, ring::buffer_len(size)))
                .ok_or(E_NO_MEMORY)?;
            let made = gate::bytes(buf)
                .ok()
                .and_then(|b| Writer::create(b).ok())
                .ok_or(E_BAD_BUFFER);
            let answer = match made {
                Ok(_) => code(retry(|| self.api.send_ring(conn.id, buf), busy_code)),
                Err(e) => Ok(e),
            };
            match (made, answer) {
                (Ok(writer), Ok(0)) => {
                    conn.tx = Some(Tx {
                        writer,
                        buf,
                        waiting: false,
                    })
                }
                (_, answer) => {
                    let _ = gate::shared_free(buf);
                    return Err(match answer {
                        Ok(e) if e < 0 => e,
                        _ => E_BAD_BUFFER,
                    });
                }
            }
        }
        let Some(tx) = conn.tx.as_mut() else {
            return Err(E_BAD_BUFFER);
        };
        let w = &mut tx.writer;
        let n = w.write(data).map_err(|_| E_BAD_BUFFER)?;
        if n < data.len() {
            // Full: ask to be woken when the stack has read half of it, and look
            // again (it may have read meanwhile).
            let half = (w.capacity() / 2) as u64;
            w.wake_at(w.head().wrapping_sub(half).max(1));
            tx.waiting = true;
            fence(Ordering::SeqCst);
            if w.free().is_ok_and(|f| f as u64 >= half) {
                w.wake_at(0);
                tx.waiting = false;
            }
        } else if tx.waiting {
            w.wake_at(0);
            tx.waiting = false;
        }
        if n > 0 {
            if conn.local {
                // Nobody else runs the stack here.
                gate::poll_once();
            } else {
                gate::endpoint().wake(conn.net);
            }
        }
        Ok(n)
    }

    /// Waits (at most `timeout_ns`) until every closed connection's FIN has been
    /// acknowledged: what an app does before it exits, so its peers see a clean end.
    pub fn linger(&self, timeout_ns: u64) {
        let deadline = flexos_kernel::time::now_ns().saturating_add(timeout_ns);
        while matches!(self.api.closing(), Ok(n) if n > 0 || n == E_BUSY)
            && flexos_kernel::time::now_ns() < deadline
        {
            gate::poll_once();
            core::hint::spin_loop();
        }
    }

    /// A counter of the stack (see `sock::stat`), 0 if unavailable.
    pub fn stat(&self, which: u16) -> u64 {
        retry(|| self.api.stat(which), busy_code)
            .ok()
            .filter(|&v| v >= 0)
            .unwrap_or(0) as u64
    }

    /// The peer's address and port.
    pub fn peer(&self, conn: &Conn) -> Result<([u8; 4], u16), i64> {
        match code(retry(|| self.api.peer(conn.id), busy_code))? {
            v if v >= 0 => Ok(((((v >> 16) as u32).to_be_bytes()), v as u16)),
            e => Err(e),
        }
    }

    /// Bytes of `conn` sent but not yet acknowledged.
    pub fn unacked(&self, conn: &Conn) -> Result<usize, i64> {
        match code(retry(|| self.api.pending(conn.id), busy_code))? {
            n if n >= 0 => Ok(n as usize),
            e => Err(e),
        }
    }
}

impl Conn {
    /// Does the stack share this compartment (calls to it are direct calls)?
    pub fn local(&self) -> bool {
        self.local
    }

    /// When the oldest unread bytes arrived, as a stamp to order connections by
    /// (see `ring::since`).
    pub fn since(&self) -> u64 {
        if self.closed {
            return 0;
        }
        self.reader.since()
    }

    /// Copies up to `buf.len()` received bytes into `buf`, without waiting.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Recv, i64> {
        if self.closed {
            return Ok(Recv::End);
        }
        let mut n = self.reader.read(buf).map_err(|_| E_CLOSED)?;
        if n == 0 && self.reader.closed() == MOVED && self.reader.available() == Ok(0) {
            // The stack moved the stream to a ring of another size: this one is read
            // to its end, so take the new one (which lets the stack free this one).
            let api = sock::Client::new(router(), self.component, self.server);
            self.reader = ring_of(&api, self.id)?;
            n = self.reader.read(buf).map_err(|_| E_CLOSED)?;
        }
        if n > 0 {
            // Every eighth of the ring read: the stack may refill it and reopen the
            // TCP window. It runs by itself elsewhere (wake it if it waits for room);
            // here, run it once now, so ACKs keep flowing while small reads drain
            // a full ring.
            if self.reader.take_published() {
                if self.local {
                    gate::poll_once();
                } else if self.reader.producer_waits() {
                    gate::endpoint().wake(self.net);
                }
            }
            return Ok(Recv::Data(n));
        }
        // Dry: the tail is published (available() did it); make sure a producer
        // that stopped on a full ring hears about the room.
        fence(Ordering::SeqCst);
        self.reader.take_published();
        if self.reader.producer_waits() {
            gate::endpoint().wake(self.net);
        }
        let closed = self.reader.closed();
        if closed != OPEN && closed != MOVED && self.reader.available().map_err(|_| E_CLOSED)? == 0
        {
            return Ok(Recv::End);
        }
        Ok(Recv::Empty)
    }

    /// Free bytes of the connection's send ring ([`Sockets::stream`]; before its first
    /// use, and after close, 0): a shared word, usable in a wait condition.
    pub fn send_space(&self) -> usize {
        match (&self.tx, self.closed) {
            (Some(tx), false) => tx.writer.free().unwrap_or(0),
            _ => 0,
        }
    }

    /// Has the stack taken everything written to the send ring into the socket? (True
    /// without a ring.) Close after it, or the ring's rest is lost.
    pub fn stream_drained(&self) -> bool {
        self.tx
            .as_ref()
            .is_none_or(|tx| tx.writer.drained().unwrap_or(true))
    }

    /// Has [`Sockets::stream`] made this connection's send ring?
    pub fn streams(&self) -> bool {
        self.tx.is_some()
    }

    /// Free bytes of the connection's send buffer as of the stack's last poll round
    /// (a shared word: usable in a wait condition; 0 before the stack first set it).
    pub fn send_room(&self) -> usize {
        if self.closed {
            return 0;
        }
        usize::try_from(self.reader.send_room()).unwrap_or(usize::MAX)
    }

    /// Data bytes of the connection's receive ring now (the stack resizes rings as
    /// connections come and go).
    pub fn ring_capacity(&self) -> usize {
        self.reader.capacity()
    }

    /// Is there something to receive, or has the stream ended? (A wait condition.)
    pub fn readable(&self) -> bool {
        !self.closed && self.reader.readable()
    }

    /// Bytes received and not yet read (`FIONREAD`); 0 for a broken ring.
    pub fn available(&mut self) -> usize {
        self.reader.available().unwrap_or(0)
    }
}

impl Udp {
    /// Copies the next datagram into `buf` (cut to its length; the rest is skipped),
    /// without waiting; `None` if none is there.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<Datagram>, i64> {
        use crate::datagram::{HEADER, Header};
        if self.reader.available().map_err(|_| E_BAD_BUFFER)? < HEADER {
            return Ok(None);
        }
        let mut h = [0u8; HEADER];
        if self.reader.read(&mut h).map_err(|_| E_BAD_BUFFER)? != HEADER {
            return Err(E_BAD_BUFFER);
        }
        let h = Header::decode(&h);
        let len = usize::from(h.len);
        let take = len.min(buf.len());
        // Written with its header in one publish: all there.
        let got = self
            .reader
            .read(&mut buf[..take])
            .map_err(|_| E_BAD_BUFFER)?;
        if got != take || self.reader.skip(len - take).map_err(|_| E_BAD_BUFFER)? != len - take {
            return Err(E_BAD_BUFFER);
        }
        Ok(Some(Datagram {
            len: take,
            addr: h.addr,
            port: h.port,
        }))
    }

    /// Is a datagram waiting? (A wait condition.)
    pub fn readable(&self) -> bool {
        self.reader.readable()
    }
}
