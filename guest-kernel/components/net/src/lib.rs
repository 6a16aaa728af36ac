//! The `net` component: a smoltcp 0.14 TCP/IPv4 stack (ARP, ICMP echo, TCP with 2 MiB
//! windows) over the `netdev` driver, serving the [`sock`] interface to the app.
//!
//! # Data path (received bytes, the direction iperf measures)
//!
//! 1. The device writes each (TSO super-)frame straight into a receive buffer of the
//!    driver: no copy by the guest. With net and netdev in one compartment (splits 1
//!    and 2) the buffers are in its private heap and smoltcp parses them in place;
//!    with netdev alone (split 3) they are in the heap of the net-netdev channel and
//!    net copies each frame out once before parsing (netdev could change it), the ids
//!    crossing in relay rings (`flexos_netdev::relay`), not gate calls.
//! 2. smoltcp copies the payload into the socket's receive buffer (2 MiB: window
//!    scale 5; private).
//! 3. Between gate calls the stack's poll loop moves bytes from the socket into the
//!    connection's [`ring`] in the heap of the channel with the app, with `rep movsb`.
//!    Freeing socket space reopens the TCP window. The open connections share that
//!    heap equally (a lone connection gets 2 MiB with the app in another compartment,
//!    512 KiB in net's own; iperf3 -P 4's five 256 KiB each): when one comes or goes
//!    the others' rings move to the new size ([`ring::MOVED`]), since a stream's
//!    rate follows its ring's size (with the largest ring the heap still had at
//!    accept, -P 4 ran at 4.66, 1.86, 0.45 and 0.45 Gbit/s; with equal rings
//!    2.6-2.8 each).
//! 4. The app's `recv` copies out of the ring (`rep movsb`), with no gate call: a
//!    recv(16) is a local copy plus, every eighth of the ring, one store of the tail.
//!
//! So each byte is copied three times by the guest (four in split 3), always by a
//! `rep movsb`-class copy: measured in a guest, 1.6 us per cache-hot 64 KiB against
//! 14.6 us for rpc-shm's word-by-word `SharedBytes::write`.
//!
//! # Data path (sent bytes: iperf3 -R)
//!
//! 1. The app writes into the connection's send ring ([`Sockets::stream`]; a ring in
//!    the app's heap of the channel with net, registered with `sock::send_ring`): a
//!    local copy, no gate call. (`sock::send` and `sock::send_batch` copy through a
//!    shared buffer in a gate call instead.)
//! 2. Every poll round the stack copies what the socket's send buffer has room for
//!    out of the ring (its tail published, so the app may write again; the app asked
//!    with `wake_at` to be woken at half a ring when it found it full).
//! 3. smoltcp copies segments into the driver's transmit buffers: up to 64 KiB each
//!    when the device takes TSO (splits 1 and 2), which the host cuts to the peer's
//!    MSS and checksums (the link raises the MSS of received SYNs so smoltcp
//!    builds such segments).
//!
//! Each connection's receive ring also carries the free room of its send buffer (a
//! word updated every round and by every send), for a sender on the batch path.
//!
//! # Who waits where
//!
//! - The stack's compartment runs `gate::serve_forever`, which polls the device, the
//!   stack and the rings between gate calls ([`Poller`](flexos_kernel::gate::Poller))
//!   and, after a bounded spin with nothing to do, arms the device's used_event and
//!   sleeps (woken by the device's doorbell, a gate call, or the app) at most until
//!   smoltcp's next timer.
//! - The app waits for data in `gate::wait_until` on its rings and the event word: it
//!   spins briefly (150 rounds), then sleeps; net wakes it (a doorbell, only if it
//!   sleeps) after pushing data or an event. The stack's compartment spins 100 poll
//!   rounds before it sleeps. Both were measured: on 2 host cores every spinning
//!   vCPU takes time from the device thread and the peer.
//! - When a ring is full, net asks the app (ring word `wake_at`) to wake it once half
//!   the ring has been read.
//! - In one compartment there is nobody else: `gate::wait_until` runs the same poll
//!   loop itself, so the app's waits pump the stack, and so does every eighth of a
//!   ring the app reads (ACKs keep flowing while small reads drain a full ring).
//!
//! Measured (iperf2 client, 128 KiB writes, 4 s, `scripts/bench-iperf` on a busy
//! 2-core host, one run): 1 / 2 / 3 compartments 1.9 / 1.9 / 1.2 Gbit/s at recv=16,
//! 2.5 / 2.2 / 1.3 at 1 KiB, 6.1 / 5.1 / 2.7 at 64 KiB, with the TSO tap forwarder
//! baseline at 2.6 and 6.0 in the same run. Figures vary 2x from run to run here.
//! - In split 3 netdev's compartment relays between the device and the rings; net
//!   asks it (control word `waiting`) to wake it on the next frame before sleeping.
//!
//!
//! # Connections that never progress
//!
//! A client that connects and then sends nothing, or a SYN whose sender never
//! answers, must not use up what the next client needs: smoltcp sockets (2 MiB of
//! private memory each), rings (shared heap), and the app's attention. The stack
//! bounds each of them and times them out ([`lockout`] has the policies, the values
//! and the reasons; the app's own protocol timeouts are the app's):
//!
//! - **SYN queue.** Each port keeps two listening sockets and at most `net.synq` (2)
//!   half-open connections (SYN received, handshake not completed). One more SYN
//!   drops the oldest entry: its socket is aborted, without a RST (its peer may not
//!   exist), and listens again (the same socket and buffers: 10,000 SYNs allocate
//!   nothing). An entry older than
//!   `net.handshake` (5 s) is dropped too. Half-open connections never reach the app
//!   and hold no ring. The driver link pauses after each SYN until the ports have been
//!   tended, so a burst of SYNs cannot use up the listeners within one poll (smoltcp
//!   would refuse the rest with RSTs, a real client among them). The first overflow of
//!   a flood prints one line per port.
//! - **Admission.** Only established connections (or further along: data and FIN may
//!   already have come) become acceptable, and only while the pool has a slot: at most
//!   `net.conns` (8) connections admitted at once, accepted or not. When it is full,
//!   the connection waits in the SYN queue; the stack resets the connection idle
//!   longest (at least 1 s; as Nginx closes idle keep-alive connections when it runs
//!   out) to make room, and if none is that idle, the waiting connection is refused
//!   (RST) when its handshake time is up.
//! - **Rings.** Each admitted connection gets its ring at `accept`. The pool reserves
//!   one 8 KiB floor ring per slot when the stack starts, so an admitted connection
//!   always gets a ring however the heap is fragmented; a connection gets its equal
//!   share of the rest of the heap (see the data path above), else a floor ring until
//!   the others' rings have moved to make room. A ring is released when the app closes the
//!   connection: the app reads it without gate calls, so it cannot go to another
//!   connection while the app may still read it. When the peer resets the connection,
//!   or the stack does (idle, dead peer, to make room), the socket is released at once
//!   and the app reads the reset from the ring, as before.
//! - **Timeouts.** `net.idle=SECS` resets a connection that moved no byte either way
//!   for that long (default 0: never, the stack cannot know the app's protocol: an
//!   iperf3 control connection is silent for a whole test, a Redis client between
//!   commands). Keep-alive probes go to a silent peer every `net.keepalive` (60) s,
//!   and one that answers nothing for three intervals is reset (smoltcp's timeout).
//!   A socket the app closed gets 10 s to finish closing, then a RST; at most 4 are
//!   closing at once.
//! - **Sockets.** At most `net.conns` + 4 closing + 2 resetting + 4 per listening
//!   port (8 + 6 + 8 = 22, ~45 MiB, for iperf's two ports); socket buffers are
//!   allocated fallibly, so a heap that runs short refuses clients instead of
//!   crashing the compartment.
//!
//! The counters (`sock::stat` 8 to 11: half-open connections dropped and timed out,
//! connections reset idle, connections refused) and a console line per timeout or
//! reset say what happened. None of this touches the received bytes: the checks are
//! per frame (the SYN test reads a few header bytes) or per poll round.
//!
//! The plain-Rust parts ([`ring`], [`args`], [`codes`], [`tcp_end`], [`lockout`]) build
//! without the `guest` feature and are tested on the host (components/units).

#![no_std]

extern crate alloc;

pub mod args;
pub mod batch;
pub mod codes;
pub mod datagram;
pub mod lockout;
pub mod ring;
pub mod tcp_end;

/// Default send buffer of each TCP socket ([`lockout::Limits::socket_tx`]): what
/// `sock::send` can queue before it answers `E_AGAIN`, and what `sock::pending` counts
/// against (a writer waits until half of it is free before it tries again, as a
/// kernel's send low-water mark; [`Conn::send_room`] shows the room without a call).
pub const SEND_BUFFER: usize = 64 << 10;

#[cfg(feature = "guest")]
mod client;
#[cfg(feature = "guest")]
mod link;
#[cfg(feature = "guest")]
mod stack;

#[cfg(feature = "guest")]
pub use client::{Conn, Datagram, Listener, Recv, Sockets, Udp};
#[cfg(feature = "guest")]
use flexos_kernel::rpc::SharedBuf;
#[cfg(feature = "guest")]
pub use stack::Net;

#[cfg(feature = "guest")]
flexos_kernel::rpc::interface! {
    /// TCP sockets. Ids are small non-negative integers; every method returns a
    /// negative [`codes`](crate::codes) value on error. Received bytes do not cross
    /// here: each connection has a [`ring`](crate::ring) in the shared heap.
    pub mod sock (id = 24) {
        /// Listens on `port`; returns a listener id.
        fn listen(port: u16) -> i64 = 0;
        /// A connection that arrived on `listener` (established, with its ring), or
        /// `E_AGAIN`.
        fn accept(listener: i64) -> i64 = 1;
        /// The receive ring of connection `conn` (an empty handle if there is none).
        fn ring(conn: i64) -> SharedBuf = 2;
        /// Queues the bytes of `buf` for sending; returns how many were taken, or
        /// `E_AGAIN` if the send buffer is full.
        fn send(conn: i64, buf: SharedBuf) -> i64 = 3;
        /// Closes `conn` (FIN after the queued bytes); its id and ring are gone.
        /// Every accepted connection must be closed, also after its stream ended:
        /// its ring and pool slot are held until then.
        fn close(conn: i64) -> i64 = 4;
        /// The event word: a counter bumped on every new connection and end of stream.
        fn events() -> SharedBuf = 5;
        /// Bytes queued for sending and not yet acknowledged.
        fn pending(conn: i64) -> i64 = 6;
        /// Sockets the app closed that are still closing (their FIN not yet acked).
        fn closing() -> i64 = 7;
        /// A counter of the stack's compartment: 0 frames received, 1 bytes
        /// received, 2 frames sent, 3 device kicks, 4 sleeps, 5 doorbells rung, 6 TSC
        /// cycles in smoltcp and the driver, 7 TSC cycles moving bytes into rings, 8
        /// half-open connections dropped (SYN queue full), 9 half-open connections
        /// timed out, 10 connections reset idle (`net.idle`, or to make room), 11
        /// connections refused (pool full).
        fn stat(which: u16) -> i64 = 8;
        /// The peer of `conn`: its IPv4 address (big-endian order, as a number) shifted
        /// left 16 bits, or'ed with its port.
        fn peer(conn: i64) -> i64 = 9;
        /// Queues the bytes of many connections at once ([`batch`](crate::batch)
        /// entries in `buf`): each entry's result is written back into it (bytes
        /// taken, 0 when its send buffer is full, or a negative code). Returns how
        /// many entries were read.
        fn send_batch(buf: SharedBuf) -> i64 = 10;
        /// Makes `buf` the send ring of `conn`: a [`ring`](crate::ring) the app
        /// created (`ring::Writer::create`) in its heap of the channel with net. The
        /// stack moves what the app writes there into the socket between gate calls,
        /// as it moves received bytes the other way, so a sender makes no gate call
        /// per write. Bytes still in the ring when the app closes the connection are
        /// dropped. 0, or a negative code.
        fn send_ring(conn: i64, buf: SharedBuf) -> i64 = 11;
        /// Opens a UDP endpoint on `port`; returns its id. Its datagrams arrive in a
        /// ring of their own ([`udp_ring`](sock::Api::udp_ring)), each as a
        /// [`datagram`](crate::datagram) header and its bytes; datagrams that find
        /// the ring and the socket full are dropped, as UDP may.
        fn udp_open(port: u16) -> i64 = 12;
        /// The datagram ring of UDP endpoint `udp`.
        fn udp_ring(udp: i64) -> SharedBuf = 13;
        /// Sends the bytes of `buf` as one datagram from `udp` to `dest` (address
        /// shifted left 16 bits, or'ed with the port, as [`peer`](sock::Api::peer)
        /// answers); the bytes sent, `E_AGAIN` if the send queue is full.
        fn udp_send(udp: i64, dest: i64, buf: SharedBuf) -> i64 = 14;
        /// Closes UDP endpoint `udp`; its id and ring are gone.
        fn udp_close(udp: i64) -> i64 = 15;
        /// Opens a TCP connection to `dest` (as [`peer`](sock::Api::peer) answers)
        /// from an ephemeral port; returns its connection id at once, with its ring,
        /// like an accepted one: bytes written to it (its send ring) go once the
        /// handshake completes, and a refused connection reads as reset.
        fn connect(dest: i64) -> i64 = 16;
    }
}
