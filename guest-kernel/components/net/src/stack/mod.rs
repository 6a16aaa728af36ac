//! [`Net`]: the smoltcp stack over the netdev driver, and the work the compartment
//! hosting it does between gate calls ([`Poller`]); its `sock` server is in [`api`].

mod api;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use flexos_kernel::components::{compartment_of, is_local};
use flexos_kernel::gate::{self, Poller};
use flexos_kernel::rpc::SharedBuf;
use flexos_kernel::sync::SpinLock;
use flexos_kernel::{Args, boot_info, println, time};
use flexos_netdev::{HeapRx, NetDevice, Netdev, nic};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use crate::args::{DEFAULT_IP, parse_cidr};
use crate::codes::*;
use crate::link::Link;
use crate::ring::{self, Writer};
use crate::tcp_end::{TcpState, stream_end};

/// Receive buffer of a TCP socket: 2 MiB (window scale 5), room for ~30 TSO
/// super-frames in flight. Measured against 1 MiB (iperf2, recv=64 KiB, 4 s runs
/// interleaved on a quiet host): 1 compartment 6.84-7.29 Gbit/s against 5.37-6.37, 2
/// compartments 6.86-6.94 against 5.33-5.93 (fewer ACKs and sleeps: the larger window
/// covers the vCPU's sleep and wake-up); 4 MiB gained nothing more.
const SOCKET_RX: usize = 2 << 20;
/// Send buffer of a TCP socket (servers here send little: iperf3's control messages).
const SOCKET_TX: usize = 64 << 10;
/// Data bytes of a connection's ring to the app: the first size the shared heap has
/// room for (the arenas of a 3-compartment run are ~1.3 MiB with the default region).
/// With the app elsewhere a larger ring means fewer hand-overs between the two vCPUs
/// (wake-ups, and the app finding the ring empty while net waits for a host core).
/// Measured, 2 compartments, iperf2 recv=16 B, 4 s runs interleaved: 512 KiB
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
/// Largest ring when the app shares net's compartment.
pub(super) const LOCAL_RING: usize = 512 << 10;
/// Listening sockets kept per port: smoltcp has no backlog, so a second client
/// arriving while the first is being accepted needs a second listener.
const LISTENING: usize = 2;
/// Idle poll rounds before the stack's compartment sleeps (a round polls the device
/// and the stack: ~1 us). Measured with iperf2 (128 KiB writes), 3 runs each: 2
/// compartments 6.1-6.8 Gbit/s with 100 rounds against 5.2-5.8 with the gate
/// policy's 1500 (the spinning vCPU takes a host core the device thread and the
/// app need); 1 compartment 6.6-7.7 either way.
const SPIN_ROUNDS: u32 = 100;
/// Most TCP sockets at once (listening, connected, closing): each holds ~2 MiB of
/// private memory (~33 MiB at most, of the compartment's default 64), so an app that listens on every port or a flood of clients runs
/// into this limit (calls fail with `E_NO_MEMORY`, new clients are not answered) rather
/// than out of heap.
const MAX_SOCKETS: usize = 16;
/// Receive buffers posted to the device (64 KiB each, private heap).
const RX_BUFFERS: u16 = 64;
/// Longest sleep when smoltcp has no timer pending (us).
const IDLE_SLEEP_US: u64 = 10_000;
/// The `net` component. `client` is the component whose compartment gets the rings
/// and wake-ups (the app), `netdev` the driver's component.
pub struct Net {
    client: u16,
    netdev: u16,
    /// The netdev component's server, for the 3-way split (netdev elsewhere).
    netdev_server: &'static nic::Server<Netdev>,
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

struct Listener {
    port: u16,
    listening: Vec<SocketHandle>,
    ready: VecDeque<SocketHandle>,
}

struct Conn {
    handle: SocketHandle,
    ring: SharedBuf,
    writer: Option<Writer<'static>>,
    /// The ring has been told the stream ended.
    ended: bool,
    /// The producer asked the app to wake it when the ring has room.
    waiting_space: bool,
}

struct Stack {
    link: Link,
    iface: Interface,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    events: SharedBuf,
    events_count: u64,
    /// The client's compartment, and whether it is another one (wake it up).
    client: u32,
    remote: bool,
    /// A component in the client's compartment, to allocate its rings for.
    client_component: u16,
    armed: bool,
    /// Sockets the app closed that smoltcp is still closing.
    reap_list: Vec<SocketHandle>,
    /// TSC cycles spent in smoltcp (device included) and moving bytes into rings.
    stack_cycles: u64,
    ring_cycles: u64,
}

fn now() -> Instant {
    Instant::from_micros((time::now_ns() / 1000) as i64)
}

impl Net {
    pub const fn new(client: u16, netdev: u16, netdev_server: &'static nic::Server<Netdev>) -> Net {
        Net {
            client,
            netdev,
            netdev_server,
            state: SpinLock::new(StateCell(State::Unstarted)),
            spin: AtomicU32::new(u32::MAX),
        }
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
        let mut link = link;
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = time::rdtsc();
        let mut iface = Interface::new(config, &mut link, now());
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
        let client = compartment_of(self.client);
        State::Running(Box::new(Stack {
            link,
            iface,
            sockets: SocketSet::new(Vec::new()),
            listeners: Vec::new(),
            conns: Vec::new(),
            events,
            events_count: 0,
            client,
            remote: client != boot_info().compartment_id,
            client_component: self.client,
            armed: false,
            reap_list: Vec::new(),
            stack_cycles: 0,
            ring_cycles: 0,
        }))
    }

    /// The stack's address as configured (for messages): a.b.c.d.
    pub fn address(&self) -> [u8; 4] {
        let args = Args::of_run();
        args.get("ip").and_then(parse_cidr).unwrap_or(DEFAULT_IP).0
    }
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

/// A new socket listening on `port`, unless the stack already has [`MAX_SOCKETS`].
fn new_listener(sockets: &mut SocketSet<'static>, port: u16) -> Option<SocketHandle> {
    if sockets.iter().count() >= MAX_SOCKETS {
        return None;
    }
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; SOCKET_RX]),
        tcp::SocketBuffer::new(vec![0u8; SOCKET_TX]),
    );
    s.set_nagle_enabled(false);
    s.listen(port).ok()?;
    Some(sockets.add(s))
}

impl Stack {
    fn bump_events(&mut self) {
        self.events_count += 1;
        if let Ok(bytes) = gate::bytes(self.events) {
            bytes.store_u64(0, self.events_count);
        }
    }

    /// One round: the device and the stack, then accepts and rings. Returns whether
    /// anything happened.
    fn poll(&mut self) -> bool {
        if self.armed {
            self.link.disarm();
            self.armed = false;
        }
        let before = {
            let st = self.link.stats();
            st.rx_frames + st.tx_frames
        };
        let t0 = time::rdtsc();
        self.iface.poll(now(), &mut self.link, &mut self.sockets);
        let t1 = time::rdtsc();
        self.stack_cycles += t1 - t0;
        let mut progress = {
            let st = self.link.stats();
            st.rx_frames + st.tx_frames != before
        };
        let mut events = false;
        // Listeners that left LISTEN are connections to accept; replace them.
        for l in &mut self.listeners {
            let mut i = 0;
            while i < l.listening.len() {
                let h = l.listening[i];
                if self.sockets.get::<tcp::Socket>(h).state() != tcp::State::Listen {
                    l.ready.push_back(h);
                    l.listening.swap_remove(i);
                    events = true;
                } else {
                    i += 1;
                }
            }
            while l.listening.len() < LISTENING {
                match new_listener(&mut self.sockets, l.port) {
                    Some(h) => l.listening.push(h),
                    None => break,
                }
            }
        }
        let mut moved = false;
        for conn in self.conns.iter_mut().flatten() {
            let sock = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            let Some(writer) = conn.writer.as_mut() else {
                continue;
            };
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
                moved = true;
            }
            if let (false, Some(how)) = (
                conn.ended,
                stream_end(state_of(sock.state()), sock.recv_queue()),
            ) {
                writer.close(how);
                conn.ended = true;
                events = true;
            }
        }
        self.ring_cycles += time::rdtsc() - t1;
        if events {
            self.bump_events();
        }
        if (moved || events) && self.remote {
            gate::endpoint().wake(self.client);
        }
        progress |= moved || events;
        progress
    }

    /// Arms the device and checks for pending work; the longest sleep, or `None`.
    fn before_sleep(&mut self) -> Option<u64> {
        self.armed = true;
        if self.link.arm() {
            return None;
        }
        for conn in self.conns.iter().flatten() {
            if let (true, Some(w)) = (conn.waiting_space, &conn.writer)
                && w.free().map(|f| f >= w.capacity() / 2).unwrap_or(true)
            {
                return None;
            }
        }
        match self.iface.poll_delay(now(), &self.sockets) {
            Some(d) if d.total_micros() == 0 => None,
            Some(d) => Some(d.total_micros().min(IDLE_SLEEP_US)),
            None => Some(IDLE_SLEEP_US),
        }
    }

    fn conn(&mut self, id: i64) -> Option<&mut Conn> {
        self.conns.get_mut(usize::try_from(id).ok()?)?.as_mut()
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

impl Stack {
    /// Remembers a socket the app closed, and drops the ones whose close finished.
    fn closing(&mut self, handle: SocketHandle) {
        self.reap_list.push(handle);
        self.reap();
    }

    /// Drops the closed sockets whose close finished.
    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        self.reap_list.retain(|&h| {
            let done = matches!(
                sockets.get::<tcp::Socket>(h).state(),
                tcp::State::Closed | tcp::State::TimeWait
            );
            if done {
                sockets.remove(h);
            }
            !done
        });
    }
}
