//! [`Net`]: the smoltcp stack over the netdev driver, and the work the compartment
//! hosting it does between gate calls ([`Poller`]); its `sock` server is in [`api`].
//! How connections are queued, admitted, given rings and timed out is in the crate
//! docs ("Connections that never progress"); the policies are in [`crate::lockout`].

mod api;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use flexos_kernel::components::{compartment_of, is_local};
use flexos_kernel::gate::{self, Poller};
use flexos_kernel::rpc::SharedBuf;
use flexos_kernel::sync::SpinLock;
use flexos_kernel::{Args, boot_info, println, time};
use flexos_netdev::{HeapRx, NetDevice, Netdev, nic};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{Socket, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use crate::args::{DEFAULT_IP, parse_cidr};
use crate::codes::*;
use crate::link::Link;
use crate::lockout::{
    DEAD_PEER_PROBES, EVICT_IDLE_S, HalfOpen, Limits, Ring, RingPool, SynQueue, Verdict, half_open,
    longest_idle,
};
use crate::ring::{self, Writer};
use crate::tcp_end::{TcpState, stream_end};

/// Data bytes of a connection's ring to the app, largest first: the first size the
/// shared heap has room for beside the pool's floor ([`MIN_RING`] per connection, kept
/// from the start) (the arenas of a 3-compartment run are ~1.3 MiB with the default
/// region). With the app elsewhere a larger ring means fewer hand-overs between the two
/// vCPUs (wake-ups, and the app finding the ring empty while net waits for a host
/// core). Measured, 2 compartments, iperf2 recv=16 B, 4 s runs interleaved: 512 KiB
/// 2.89-2.93 Gbit/s, 1 MiB 3.38-3.61, 2 MiB 3.63-4.03, 4 MiB 3.57-3.76; at 64 KiB
/// 6.65-6.69 either way. With the app in net's own compartment there is no hand-over
/// to cover and a 2 MiB ring looked slower (1 compartment, 64 KiB, one pair of runs:
/// 6.86-6.96 against 7.22-7.29): there it starts at [`LOCAL_RING`].
const RING_SIZES: [usize; 7] = [
    2 << 20,
    1 << 20,
    512 << 10,
    256 << 10,
    128 << 10,
    64 << 10,
    16 << 10,
];
/// Heap bytes the rings leave free (the event word, and room for allocation to
/// round up).
const RING_MARGIN: usize = 16 << 10;
/// Largest ring when the app shares net's compartment.
pub(super) const LOCAL_RING: usize = 512 << 10;
/// The pool's floor ring, reserved per connection slot when the stack starts: a
/// connection gets one when the heap has no room for a larger ring. 8 KiB x 8 slots
/// (66 KiB with the headers) still leaves a second connection (iperf3's data stream,
/// after its control connection) the 512 KiB ring of a 2-compartment arena (2.66 MiB)
/// and the 256 KiB one of a 3-compartment arena (1.33 MiB), as before the pool.
const MIN_RING: usize = 8 << 10;
/// Listening sockets kept per port: smoltcp has no backlog, so a second client
/// arriving while the first is being accepted needs a second listener.
const LISTENING: usize = 2;
/// Idle poll rounds before the stack's compartment sleeps (a round polls the device
/// and the stack: ~1 us). Measured with iperf2 (128 KiB writes), 3 runs each: 2
/// compartments 6.1-6.8 Gbit/s with 100 rounds against 5.2-5.8 with the gate
/// policy's 1500 (the spinning vCPU takes a host core the device thread and the
/// app need); 1 compartment 6.6-7.7 either way.
const SPIN_ROUNDS: u32 = 100;
/// Sockets the app closed that are still closing (our FIN unacknowledged, or the
/// peer's FIN not yet come), kept at most: closing the next one resets the oldest.
const CLOSING: usize = 4;
/// Seconds a closed socket may take to finish closing before it is reset: a peer
/// that never acknowledges our FIN, or never sends its own, would keep it for ever
/// (smoltcp has no FIN-WAIT-2 timeout).
const LINGER_S: u64 = 10;
/// Reset sockets whose RST is still to be sent: room kept for them in the budget.
const ABORTING: usize = 2;
/// Receive buffers posted to the device (64 KiB each, private heap).
const RX_BUFFERS: u16 = 64;
/// Longest sleep when smoltcp has no timer pending (us); also how late a timeout of
/// ours (handshake, idle, linger) may fire.
const IDLE_SLEEP_US: u64 = 10_000;
const NS_PER_S: u64 = 1_000_000_000;

/// The `net` component. `client` is the component whose compartment gets the rings
/// and wake-ups (the app), `netdev` the driver's component.
pub struct Net {
    client: u16,
    netdev: u16,
    /// The netdev component's server, for the 3-way split (netdev elsewhere).
    netdev_server: &'static nic::Server<Netdev>,
    /// The image's defaults for [`Limits`], which `net.*` arguments override.
    defaults: Limits,
    state: SpinLock<StateCell>,
    /// Idle poll rounds before sleeping, `net.spin=N` (default [`SPIN_ROUNDS`];
    /// `u32::MAX`: not read from the arguments yet).
    spin: AtomicU32,
}

struct StateCell(State);

// SAFETY: a compartment runs on one vCPU; the state (raw pointers into its own heap,
// MMIO window and shared region, all valid for the run) is only reached under the lock.
unsafe impl Send for StateCell {}

enum State {
    Unstarted,
    Absent,
    Running(Box<Stack>),
}

/// A listening port: its listening sockets, its half-open connections (and
/// established ones waiting for a pool slot), and its connections to accept.
struct Port {
    port: u16,
    listening: Vec<SocketHandle>,
    half_open: SynQueue<SocketHandle>,
    /// Established and admitted to the pool, not yet accepted.
    ready: VecDeque<SocketHandle>,
    /// The queue overflowed since it was last empty (reported once per flood).
    flooding: bool,
}

struct Conn {
    /// The socket; `None` once it is gone (reset by the peer, for idleness or to make
    /// room): the ring stays until the app closes the connection, since the app reads
    /// it without asking and must not find another connection's bytes there.
    handle: Option<SocketHandle>,
    ring: Ring<SharedBuf>,
    writer: Option<Writer<'static>>,
    /// The ring has been told the stream ended.
    ended: bool,
    /// The producer asked the app to wake it when the ring has room.
    waiting_space: bool,
    /// When a byte last moved either way (ns).
    last_active: u64,
    /// Reset to admit another connection; its slot frees when the app closes it.
    evicted: bool,
    /// The ring the stream moved out of ([`ring::MOVED`]), until the app has read it
    /// to its end and asked for the new one (`sock::ring`): then it is freed.
    old: Option<Ring<SharedBuf>>,
    /// The send room last published in the ring (`ring::room`).
    room_shown: usize,
    /// The app's send ring (`sock::send_ring`), read into the socket every round.
    tx: Option<ring::Reader<'static>>,
}

/// A socket the app closed (or the stack reset) that smoltcp is still closing.
struct Closing {
    handle: SocketHandle,
    /// When it was closed, or reset.
    since: u64,
    /// Reset: only its RST is left to send.
    aborted: bool,
}

/// The lockout counters (`sock::stat` 8..=11).
#[derive(Default)]
struct Counters {
    half_open_dropped: u64,
    half_open_timed_out: u64,
    idle_resets: u64,
    refused: u64,
}

struct Stack {
    link: Link,
    iface: Interface,
    sockets: SocketSet<'static>,
    ports: Vec<Port>,
    conns: Vec<Option<Conn>>,
    events: SharedBuf,
    events_count: u64,
    /// The client's compartment, and whether it is another one (wake it up).
    client: u32,
    remote: bool,
    /// A component in the client's compartment, to allocate its rings for.
    client_component: u16,
    armed: bool,
    limits: Limits,
    pool: RingPool<SharedBuf>,
    /// Connections reset to make room whose rings the app still holds.
    evicted_unclosed: usize,
    /// Sockets the app closed (or the stack reset) that smoltcp is still closing.
    closing: Vec<Closing>,
    /// Closed sockets out of the set, to listen again: a socket's 2 MiB buffer is
    /// allocated (and zeroed) once, however many connections it serves.
    spare: Vec<tcp::Socket<'static>>,
    /// Sockets made so far (in the set or spare).
    made: usize,
    counters: Counters,
    /// TSC cycles spent in smoltcp (device included) and moving bytes into rings.
    stack_cycles: u64,
    ring_cycles: u64,
    /// Arrival stamps handed out to rings (see `ring::since`).
    arrivals: u64,
    /// A connection came or went, or heap was freed: the rings' fair size may have
    /// changed ([`Stack::rebalance`]).
    rebalance: bool,
    /// (open connections, largest ring): a cap below the fair size, set when the
    /// heap is too fragmented for the fair size and kept while the count stays.
    ring_cap: (usize, usize),
    /// UDP endpoints (`sock::udp_open`), at most [`UDP_ENDS`].
    udps: Vec<Option<UdpEnd>>,
    /// The next ephemeral port to try for `sock::connect`.
    next_port: u16,
}

/// A UDP endpoint: its socket and the ring its datagrams cross to the app in.
struct UdpEnd {
    handle: SocketHandle,
    ring: SharedBuf,
    writer: Writer<'static>,
}

/// Local ports of the connections the stack opens (`sock::connect`): the IANA
/// dynamic range, 49152 to 65535.
const EPHEMERAL_FIRST: u16 = 49152;
/// UDP endpoints at once.
const UDP_ENDS: usize = 4;
/// Data bytes of a UDP endpoint's ring to the app, and of its socket's buffers.
const UDP_RING: usize = 256 << 10;
/// Datagrams a UDP socket holds each way.
const UDP_PACKETS: usize = 256;

impl Net {
    pub const fn new(client: u16, netdev: u16, netdev_server: &'static nic::Server<Netdev>) -> Net {
        Net {
            client,
            netdev,
            netdev_server,
            defaults: Limits::DEFAULT,
            state: SpinLock::new(StateCell(State::Unstarted)),
            spin: AtomicU32::new(u32::MAX),
        }
    }

    /// The same component with the image's own defaults for its bounds (more
    /// connections with smaller buffers, for a server of many small clients); the
    /// `net.*` guest arguments still override them.
    pub const fn with_limits(mut self, defaults: Limits) -> Net {
        self.defaults = defaults;
        self
    }

    /// Runs `f` on the started stack, or returns the error code.
    fn with(&self, f: impl FnOnce(&mut Stack) -> i64) -> i64 {
        let Some(mut guard) = self.state.try_lock() else {
            return E_BUSY;
        };
        if let State::Unstarted = guard.0 {
            guard.0 = self.start();
        }
        match &mut guard.0 {
            State::Running(s) => f(s),
            _ => E_NO_DEVICE,
        }
    }

    fn start(&self) -> State {
        let args = Args::of_run();
        let (link, mac) = if is_local(self.netdev) {
            let rx_buffers = args
                .get("net.rxbufs")
                .and_then(|t| t.parse().ok())
                .unwrap_or(RX_BUFFERS);
            match NetDevice::start(&mut HeapRx, rx_buffers) {
                Ok(nic) => {
                    let mac = nic.mac();
                    (Link::local(nic), mac)
                }
                Err(e) => {
                    println!("net: {e}");
                    return State::Absent;
                }
            }
        } else {
            match Link::remote(self.netdev_server, self.netdev, compartment_of(self.netdev)) {
                Ok(pair) => pair,
                Err(e) => {
                    println!("net: {e}");
                    return State::Absent;
                }
            }
        };
        let (ip, prefix) = match args.get("ip") {
            None => DEFAULT_IP,
            Some(text) => match parse_cidr(text) {
                Some(cidr) => cidr,
                None => {
                    println!("net: bad ip={text}: want A.B.C.D/PREFIX; using 10.0.0.2/24");
                    DEFAULT_IP
                }
            },
        };
        let (limits, problems) = Limits::parse_over(self.defaults, |key| args.get(key));
        for problem in problems {
            println!("{problem}");
        }
        let mut link = link;
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = time::rdtsc();
        let mut iface = Interface::new(config, &mut link, time_of(time::now_ns()));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(Ipv4Address::from(ip).into(), prefix));
        });
        let Some(events) = gate::shared_alloc(self.client, 64) else {
            println!("net: no shared memory for the event word");
            return State::Absent;
        };
        if let Ok(bytes) = gate::bytes(events) {
            bytes.store_u64(0, 0);
        }
        // The pool's floor, before any larger ring can take the room.
        let floor: Vec<SharedBuf> = (0..limits.conns)
            .map_while(|_| gate::shared_alloc(self.client, ring::buffer_len(MIN_RING)))
            .collect();
        if floor.len() < limits.conns {
            println!(
                "net: the shared heap has room for {} connections' rings, not {}",
                floor.len(),
                limits.conns
            );
        }
        let client = compartment_of(self.client);
        State::Running(Box::new(Stack {
            link,
            iface,
            sockets: SocketSet::new(Vec::new()),
            ports: Vec::new(),
            conns: Vec::new(),
            events,
            events_count: 0,
            client,
            remote: client != boot_info().compartment_id,
            client_component: self.client,
            armed: false,
            limits,
            pool: RingPool::new(floor),
            evicted_unclosed: 0,
            closing: Vec::new(),
            spare: Vec::new(),
            made: 0,
            counters: Counters::default(),
            stack_cycles: 0,
            ring_cycles: 0,
            arrivals: 0,
            rebalance: false,
            ring_cap: (0, usize::MAX),
            udps: Vec::new(),
            next_port: EPHEMERAL_FIRST,
        }))
    }

    /// The stack's address as configured (for messages): a.b.c.d.
    pub fn address(&self) -> [u8; 4] {
        let args = Args::of_run();
        args.get("ip").and_then(parse_cidr).unwrap_or(DEFAULT_IP).0
    }
}

/// smoltcp's time for `ns` nanoseconds of our clock.
fn time_of(ns: u64) -> Instant {
    Instant::from_micros((ns / 1000) as i64)
}

/// smoltcp's TCP state as the plain-Rust [`TcpState`].
fn state_of(state: tcp::State) -> TcpState {
    match state {
        tcp::State::Closed => TcpState::Closed,
        tcp::State::Listen => TcpState::Listen,
        tcp::State::SynSent => TcpState::SynSent,
        tcp::State::SynReceived => TcpState::SynReceived,
        tcp::State::Established => TcpState::Established,
        tcp::State::FinWait1 => TcpState::FinWait1,
        tcp::State::FinWait2 => TcpState::FinWait2,
        tcp::State::CloseWait => TcpState::CloseWait,
        tcp::State::Closing => TcpState::Closing,
        tcp::State::LastAck => TcpState::LastAck,
        tcp::State::TimeWait => TcpState::TimeWait,
    }
}

/// `len` zero bytes, or `None` if the heap has no room (a socket that cannot be made
/// is a client not answered, not a crashed compartment).
fn zeroed(len: usize) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0);
    Some(v)
}

/// A new closed socket with our options: no Nagle, and with keep-alive, a reset
/// after [`DEAD_PEER_PROBES`] silent intervals. With `tso` (the link tells smoltcp
/// every peer takes 64 KiB segments) no delayed ACKs either: smoltcp acknowledges at
/// once only when more than a peer's MSS is unacknowledged, which a 64 KiB MSS never
/// is, so every ACK would wait for the 10 ms timer.
fn new_socket(limits: &Limits, tso: bool) -> Option<tcp::Socket<'static>> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(zeroed(limits.socket_rx)?),
        tcp::SocketBuffer::new(zeroed(limits.socket_tx)?),
    );
    s.set_nagle_enabled(false);
    if tso {
        s.set_ack_delay(None);
    }
    if limits.keepalive_s > 0 {
        s.set_keep_alive(Some(Duration::from_secs(limits.keepalive_s)));
        s.set_timeout(Some(Duration::from_secs(
            limits.keepalive_s * DEAD_PEER_PROBES,
        )));
    }
    Some(s)
}

/// What one round's pull from a send ring did.
pub(super) struct Pulled {
    /// Bytes went into the socket.
    moved: bool,
    /// The app asked to be woken at a tail now published.
    wake: bool,
}

/// Moves what the app wrote into its send ring `tx` into `sock`'s send buffer, as
/// much as fits, then publishes the tail and says whether the app waits for it.
pub(super) fn pull_sends(
    sock: &mut tcp::Socket<'static>,
    tx: &mut ring::Reader<'static>,
) -> Result<Pulled, ring::RingError> {
    let mut moved = false;
    while sock.can_send() && tx.available()? > 0 {
        let mut failed = None;
        let n = sock
            .send(|space| match tx.read(space) {
                Ok(n) => (n, n),
                Err(e) => {
                    failed = Some(e);
                    (0, 0)
                }
            })
            .unwrap_or(0);
        if let Some(e) = failed {
            return Err(e);
        }
        if n == 0 {
            break;
        }
        moved = true;
    }
    tx.publish();
    core::sync::atomic::fence(Ordering::SeqCst);
    Ok(Pulled {
        moved,
        wake: moved && tx.producer_waits(),
    })
}

/// Is a socket in `state` done with its connection (nothing more to receive or send)?
fn finished(state: tcp::State) -> bool {
    matches!(state, tcp::State::Closed | tcp::State::TimeWait)
}

impl Stack {
    fn bump_events(&mut self) {
        self.events_count += 1;
        if let Ok(bytes) = gate::bytes(self.events) {
            bytes.store_u64(0, self.events_count);
        }
    }

    /// Most sockets at once (listening, half-open, connected, closing): each holds
    /// ~2 MiB of private memory, so this bounds the stack's memory by its limits
    /// rather than letting clients run the heap out.
    fn socket_budget(&self) -> usize {
        self.limits.conns
            + CLOSING
            + ABORTING
            + self.ports.len() * (LISTENING + self.limits.syn_queue)
    }

    /// A socket listening on `port`: a spare one, or a new one within the budget.
    fn listener(&mut self, port: u16) -> Option<SocketHandle> {
        let mut s = self.closed_socket()?;
        if s.listen(port).is_err() {
            self.spare.push(s);
            return None;
        }
        Some(self.sockets.add(s))
    }

    /// A closed socket: a spare one, or a new one within the budget.
    fn closed_socket(&mut self) -> Option<tcp::Socket<'static>> {
        match self.spare.pop() {
            Some(s) => Some(s),
            None if self.made < self.socket_budget() => {
                let s = new_socket(&self.limits, self.link.tso())?;
                self.made += 1;
                Some(s)
            }
            None => None,
        }
    }

    /// A socket connecting to `to` from a free ephemeral port (`None`: no socket
    /// within the budget, or smoltcp refused).
    fn connecting(&mut self, to: smoltcp::wire::IpEndpoint) -> Option<SocketHandle> {
        let mut s = self.closed_socket()?;
        let in_use = |sockets: &SocketSet<'static>, port: u16| {
            sockets.iter().any(|(_, sock)| match sock {
                Socket::Tcp(t) => t.local_endpoint().is_some_and(|e| e.port == port),
                _ => false,
            })
        };
        for _ in EPHEMERAL_FIRST..=u16::MAX {
            let port = self.next_port;
            self.next_port = port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
            if in_use(&self.sockets, port) {
                continue;
            }
            if s.connect(self.iface.context(), to, port).is_err() {
                break;
            }
            return Some(self.sockets.add(s));
        }
        self.spare.push(s);
        None
    }

    /// Takes socket `h` out of the set, silently (no RST: it is half-open to a peer
    /// that may not exist, or already closed), and keeps it as a spare.
    fn retire(&mut self, h: SocketHandle) {
        // Only TCP sockets are retired (UDP endpoints are removed when closed).
        if let Socket::Tcp(mut s) = self.sockets.remove(h) {
            s.abort();
            self.spare.push(s);
        }
    }

    /// Retires `h` and makes it listen on port `i` again. Re-added to the set rather
    /// than told to listen in place: the set keeps per-socket state beside the socket
    /// (a neighbour it waits to learn, after a SYN-ACK to a spoofed address on the
    /// link) that would hold up the next client's SYN-ACK for up to a second.
    fn relisten(&mut self, i: usize, h: SocketHandle) {
        self.retire(h);
        let port = self.ports[i].port;
        if let Some(h) = self.listener(port) {
            self.ports[i].listening.push(h);
        }
    }

    /// Resets the connection of socket `h` (RST to the peer) and lets it go once the
    /// RST is out.
    fn reset(&mut self, h: SocketHandle, now: u64) {
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        self.closing.push(Closing {
            handle: h,
            since: now,
            aborted: true,
        });
    }

    /// One round: the device and the stack, then the ports, the rings, and the
    /// closing sockets. Returns whether anything happened.
    fn poll(&mut self) -> bool {
        if self.armed {
            self.link.disarm();
            self.armed = false;
        }
        let before = {
            let st = self.link.stats();
            st.rx_frames + st.tx_frames
        };
        let now = time::now_ns();
        let t0 = time::rdtsc();
        self.iface
            .poll(time_of(now), &mut self.link, &mut self.sockets);
        let t1 = time::rdtsc();
        self.stack_cycles += t1 - t0;
        let mut progress = {
            let st = self.link.stats();
            st.rx_frames + st.tx_frames != before
        };
        // A SYN stopped the stack's reading: the ports are tended below before it
        // reads the next frame, so every SYN finds a listener.
        progress |= self.link.resume();
        let mut events = false;
        for i in 0..self.ports.len() {
            events |= self.tend_port(i, now);
        }
        let mut moved = false;
        if self.rebalance {
            self.rebalance = false;
            moved |= self.resize_rings();
        }
        let (bytes, ended) = self.move_bytes(now);
        moved |= bytes;
        if !self.udps.is_empty() {
            moved |= self.move_datagrams();
        }
        events |= ended;
        self.ring_cycles += time::rdtsc() - t1;
        if !self.closing.is_empty() {
            self.tend_closing(now);
        }
        if events {
            self.bump_events();
        }
        if (moved || events) && self.remote {
            gate::endpoint().wake(self.client);
        }
        progress |= moved || events;
        progress
    }

    /// Moves port `i`'s sockets along: listeners that got a SYN into the SYN queue
    /// (the oldest entry out if it is full), established connections into the pool
    /// (or, when it is full, making room or refusing them), entries past the
    /// handshake limit out, and its listeners back to [`LISTENING`]. Returns whether
    /// a connection became ready to accept.
    fn tend_port(&mut self, i: usize, now: u64) -> bool {
        let mut events = false;
        // Listeners that left LISTEN: a SYN came (or, rarely, a whole handshake).
        let mut j = 0;
        while j < self.ports[i].listening.len() {
            let h = self.ports[i].listening[j];
            let state = self.sockets.get::<tcp::Socket>(h).state();
            if state == tcp::State::Listen {
                j += 1;
                continue;
            }
            self.ports[i].listening.swap_remove(j);
            if finished(state) {
                self.relisten(i, h);
                continue;
            }
            if let Some(oldest) = self.ports[i].half_open.push(h, now) {
                self.counters.half_open_dropped += 1;
                let port = &mut self.ports[i];
                if !port.flooding {
                    port.flooding = true;
                    println!(
                        "net: port {}: SYN queue full ({} half-open): dropping the oldest (a SYN flood?)",
                        port.port,
                        port.half_open.capacity()
                    );
                }
                self.relisten(i, oldest);
            }
        }
        // The queue: completed handshakes into the pool, dead or late entries out.
        if !self.ports[i].half_open.is_empty() {
            events |= self.tend_half_open(i, now);
        }
        // Ready connections reset before the app accepted them.
        let sockets = &self.sockets;
        let mut gone = Vec::new();
        self.ports[i].ready.retain(|&h| {
            let dead = finished(sockets.get::<tcp::Socket>(h).state());
            if dead {
                gone.push(h);
            }
            !dead
        });
        for h in gone {
            self.pool.release(None);
            self.retire(h);
        }
        // Back to LISTENING listeners: new sockets while the port holds fewer than its
        // share, else the oldest half-open connections.
        let share = LISTENING + self.limits.syn_queue;
        while self.ports[i].listening.len() < LISTENING {
            let port = &self.ports[i];
            let (number, held) = (port.port, port.listening.len() + port.half_open.len());
            if held < share
                && let Some(h) = self.listener(number)
            {
                self.ports[i].listening.push(h);
                continue;
            }
            match self.ports[i].half_open.pop_oldest() {
                Some(oldest) => {
                    self.counters.half_open_dropped += 1;
                    self.relisten(i, oldest);
                }
                None => break,
            }
        }
        if self.ports[i].half_open.is_empty() {
            self.ports[i].flooding = false;
        }
        events
    }

    /// The SYN queue of port `i` (see [`Stack::tend_port`]).
    fn tend_half_open(&mut self, i: usize, now: u64) -> bool {
        let limit = self.limits.handshake_ns;
        let (mut admitted, mut listening, mut dead, mut late, mut refused) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut waiting = 0;
        let Stack {
            ports,
            sockets,
            pool,
            ..
        } = self;
        ports[i].half_open.retain(|h, since| {
            let state = state_of(sockets.get::<tcp::Socket>(h).state());
            match half_open(state, since, now, limit, || pool.admit()) {
                HalfOpen::Wait => return Verdict::Keep,
                HalfOpen::WaitForSlot => {
                    waiting += 1;
                    return Verdict::Keep;
                }
                HalfOpen::Admitted => admitted.push(h),
                HalfOpen::TimedOut => late.push(h),
                HalfOpen::Refused => refused.push(h),
                HalfOpen::Listening => listening.push(h),
                HalfOpen::Gone => dead.push(h),
            }
            Verdict::Remove
        });
        let port = ports[i].port;
        self.ports[i].listening.extend(listening);
        for h in dead {
            self.relisten(i, h);
        }
        let seconds = limit / NS_PER_S;
        for h in late {
            self.counters.half_open_timed_out += 1;
            println!(
                "net: a half-open connection to port {port} timed out after {seconds} s ({} so far)",
                self.counters.half_open_timed_out
            );
            self.relisten(i, h);
        }
        for h in refused {
            self.counters.refused += 1;
            println!(
                "net: refused a connection to port {port}: {} connections, the most allowed, none idle for {EVICT_IDLE_S} s ({} so far)",
                self.pool.slots(),
                self.counters.refused
            );
            self.reset(h, now);
        }
        if waiting > self.evicted_unclosed {
            self.evict(now);
        }
        let events = !admitted.is_empty();
        self.ports[i].ready.extend(admitted);
        events
    }

    /// The pool is full and a connection waits for a slot: resets the connection
    /// idle longest (at least [`EVICT_IDLE_S`]); its slot frees when the app closes it.
    fn evict(&mut self, now: u64) {
        let candidates = self.conns.iter().enumerate().filter_map(|(id, c)| {
            let c = c.as_ref()?;
            c.handle.is_some().then_some((id, c.last_active))
        });
        let Some(id) = longest_idle(candidates, now, EVICT_IDLE_S * NS_PER_S) else {
            return;
        };
        let Some(c) = self.conns[id].as_mut() else {
            return;
        };
        let idle = now.saturating_sub(c.last_active) / NS_PER_S;
        let h = c.handle.take();
        c.evicted = true;
        c.ended = true;
        if let Some(w) = &c.writer {
            w.close(ring::RESET);
        }
        self.evicted_unclosed += 1;
        self.counters.idle_resets += 1;
        println!(
            "net: {} connections, the most allowed: reset one idle for {idle} s to admit another ({} so far)",
            self.pool.slots(),
            self.counters.idle_resets
        );
        if let Some(h) = h {
            self.reset(h, now);
        }
        self.bump_events();
    }

    /// Moves received bytes from the sockets into the connections' rings, ends the
    /// rings of ended streams, lets go of sockets whose connection is over, and resets
    /// connections idle past `net.idle`. Returns (bytes moved, a stream ended).
    fn move_bytes(&mut self, now: u64) -> (bool, bool) {
        let mut moved = false;
        let mut events = false;
        let idle_limit = self.limits.idle_ns;
        let mut done = Vec::new();
        let mut idle = Vec::new();
        let mut stamp = self.arrivals;
        for conn in self.conns.iter_mut().flatten() {
            let Some(h) = conn.handle else {
                continue;
            };
            let sock = self.sockets.get_mut::<tcp::Socket>(h);
            let Some(writer) = conn.writer.as_mut() else {
                continue;
            };
            let mut moved_here = false;
            if let Some(tx) = conn.tx.as_mut() {
                match pull_sends(sock, tx) {
                    Ok(pulled) => {
                        if pulled.moved {
                            conn.last_active = now;
                        }
                        // The app waits for room in its ring: wake it.
                        moved |= pulled.wake;
                    }
                    // The app garbled its own ring: it only stops its own sending.
                    Err(_) => conn.tx = None,
                }
            }
            // The send buffer's room, for a sender waiting on it; crossing half the
            // buffer wakes the app (a kernel's send low-water mark).
            let room = sock.send_capacity() - sock.send_queue();
            if room != conn.room_shown {
                let half = sock.send_capacity() / 2;
                if room >= half && conn.room_shown < half {
                    moved = true;
                }
                writer.set_send_room(room as u64);
                conn.room_shown = room;
            }
            if sock.can_recv() && writer.drained() == Ok(true) {
                // The oldest unread bytes of this ring arrive now (see ring::since).
                stamp += 1;
                writer.set_since(stamp);
            }
            while sock.can_recv() {
                let free = match writer.free() {
                    Ok(f) => f,
                    Err(_) => {
                        // The app garbled its ring: end the connection.
                        sock.abort();
                        writer.close(ring::RESET);
                        conn.ended = true;
                        events = true;
                        break;
                    }
                };
                if free == 0 {
                    if !conn.waiting_space {
                        let half = (writer.capacity() / 2) as u64;
                        writer.wake_at(writer.head().wrapping_sub(half).max(1));
                        conn.waiting_space = true;
                    }
                    break;
                }
                if conn.waiting_space {
                    writer.wake_at(0);
                    conn.waiting_space = false;
                }
                let n = sock
                    .recv(|buf| {
                        let n = writer.write(buf).unwrap_or(0);
                        (n, n)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                moved_here = true;
            }
            if moved_here {
                conn.last_active = now;
                moved = true;
            }
            let state = sock.state();
            if let (false, Some(how)) = (conn.ended, stream_end(state_of(state), sock.recv_queue()))
            {
                writer.close(how);
                conn.ended = true;
                events = true;
                self.rebalance = true;
            }
            if conn.ended && finished(state) {
                // Reset by the peer (or by us above): the socket has nothing left to do.
                conn.handle = None;
                done.push(h);
            } else if idle_limit > 0 && now.saturating_sub(conn.last_active) >= idle_limit {
                conn.handle = None;
                if !conn.ended {
                    writer.close(ring::RESET);
                    conn.ended = true;
                }
                events = true;
                idle.push(h);
            }
        }
        self.arrivals = stamp;
        for h in done {
            let sock = self.sockets.get::<tcp::Socket>(h);
            if sock.remote_endpoint().is_none() {
                self.retire(h);
            } else {
                // Aborted by us: its RST is still to go.
                self.reset(h, now);
            }
        }
        for h in idle {
            self.counters.idle_resets += 1;
            println!(
                "net: reset a connection idle for {} s ({} so far)",
                idle_limit / NS_PER_S,
                self.counters.idle_resets
            );
            self.reset(h, now);
        }
        (moved, events)
    }

    /// Moves received datagrams into their endpoints' rings, each whole with its
    /// header ([`crate::datagram`]), while the ring has room; the rest wait in the
    /// socket (and what does not fit there is dropped by smoltcp, as UDP may).
    fn move_datagrams(&mut self) -> bool {
        let mut moved = false;
        let mut scratch = Vec::new();
        for end in self.udps.iter_mut().flatten() {
            let sock = self.sockets.get_mut::<udp::Socket>(end.handle);
            while let Ok((data, meta)) = sock.peek() {
                let need = crate::datagram::HEADER + data.len();
                if end.writer.free().map_or(true, |f| f < need) {
                    break;
                }
                let smoltcp::wire::IpAddress::Ipv4(addr) = meta.endpoint.addr;
                let header = crate::datagram::Header {
                    len: data.len() as u16,
                    port: meta.endpoint.port,
                    addr: addr.octets(),
                };
                scratch.clear();
                scratch.extend_from_slice(&header.encode());
                scratch.extend_from_slice(data);
                let _ = sock.recv();
                // One write, so the header and its bytes are published together.
                if end.writer.write(&scratch).unwrap_or(0) > 0 {
                    moved = true;
                }
            }
        }
        moved
    }

    /// Lets go of closing sockets that finished, resets the ones past [`LINGER_S`]
    /// and the oldest beyond [`CLOSING`].
    fn tend_closing(&mut self, now: u64) {
        let linger = LINGER_S * NS_PER_S;
        let mut open = self.closing.iter().filter(|c| !c.aborted).count();
        for c in &mut self.closing {
            let late = now.saturating_sub(c.since) >= linger;
            if !c.aborted && (late || open > CLOSING) {
                self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
                c.aborted = true;
                c.since = now;
                open -= 1;
            }
        }
        let mut gone = Vec::new();
        let sockets = &self.sockets;
        self.closing.retain(|c| {
            let s = sockets.get::<tcp::Socket>(c.handle);
            // Closed with its RST (if any) sent, or a RST that cannot go out (no
            // route, no neighbour) given up on.
            let done = s.state() == tcp::State::TimeWait
                || (s.state() == tcp::State::Closed
                    && (s.remote_endpoint().is_none() || now.saturating_sub(c.since) >= linger));
            if done {
                gone.push(c.handle);
            }
            !done
        });
        for h in gone {
            self.retire(h);
        }
    }

    /// Arms the device and checks for pending work; the longest sleep, or `None`.
    fn before_sleep(&mut self) -> Option<u64> {
        self.armed = true;
        if self.link.arm() {
            return None;
        }
        for conn in self.conns.iter_mut().flatten() {
            if let (Some(tx), Some(h)) = (conn.tx.as_mut(), conn.handle)
                && tx.available().unwrap_or(0) > 0
                && self.sockets.get::<tcp::Socket>(h).can_send()
            {
                return None;
            }
            if let (true, Some(w)) = (conn.waiting_space, &conn.writer)
                && w.free().map(|f| f >= w.capacity() / 2).unwrap_or(true)
            {
                return None;
            }
        }
        match self
            .iface
            .poll_delay(time_of(time::now_ns()), &self.sockets)
        {
            Some(d) if d.total_micros() == 0 => None,
            Some(d) => Some(d.total_micros().min(IDLE_SLEEP_US)),
            None => Some(IDLE_SLEEP_US),
        }
    }

    fn conn(&mut self, id: i64) -> Option<&mut Conn> {
        self.conns.get_mut(usize::try_from(id).ok()?)?.as_mut()
    }

    /// The socket of connection `id`, if it still has one.
    fn conn_socket(&mut self, id: i64) -> Result<SocketHandle, i64> {
        match self.conn(id) {
            None => Err(E_BAD_ID),
            Some(c) => c.handle.ok_or(E_CLOSED),
        }
    }
}

impl Poller for Net {
    fn poll(&self) -> bool {
        let Some(mut guard) = self.state.try_lock() else {
            return false;
        };
        match &mut guard.0 {
            State::Running(s) => s.poll(),
            _ => false,
        }
    }

    fn spin_rounds(&self, policy: u32) -> u32 {
        let mut rounds = self.spin.load(Ordering::Relaxed);
        if rounds == u32::MAX {
            rounds = Args::of_run()
                .get("net.spin")
                .and_then(|t| t.parse().ok())
                .unwrap_or(SPIN_ROUNDS)
                .min(u32::MAX - 1);
            self.spin.store(rounds, Ordering::Relaxed);
        }
        policy.min(rounds)
    }

    fn before_sleep(&self) -> Option<u64> {
        let mut guard = self.state.try_lock()?;
        match &mut guard.0 {
            State::Running(s) => s.before_sleep(),
            _ => Some(IDLE_SLEEP_US),
        }
    }
}
