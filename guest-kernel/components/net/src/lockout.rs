//! What keeps the stack from being locked out by connections that never progress:
//! plain Rust, so the policies are tested on the host (components/units). The stack
//! (`stack/mod.rs`) applies them; the crate docs say how they fit together.
//!
//! - [`Limits`]: the bounds and timeouts, from the `net.*` guest arguments.
//! - [`SynQueue`]: a port's half-open connections, bounded, oldest dropped first.
//! - [`RingPool`]: the connections' receive rings, a bounded pool that always has a
//!   ring for an admitted connection.
//! - [`longest_idle`]: which connection to reset when the pool is full.
//! - [`is_syn`]: whether a received frame asks for a connection (the driver link stops
//!   handing frames to smoltcp after one, so every SYN finds a listener).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::tcp_end::TcpState;

/// Half-open connections kept per listening port (`net.synq`). Each is a smoltcp
/// socket with its 2 MiB receive buffer (the one it will receive with if it
/// completes), so the queue is short: a handshake on the local link completes within
/// a poll round or two, and under a flood the oldest entries go first.
pub const SYN_QUEUE: usize = 2;
/// Seconds a connection may take to complete its handshake (`net.handshake`): a lost
/// SYN-ACK is sent again after 1 s and 3 s (smoltcp's initial retransmission timeout
/// is 1 s), so 5 s lets a real client on a lossy link through twice.
pub const HANDSHAKE_S: u64 = 5;
/// Seconds without a received or sent byte after which a connection is reset
/// (`net.idle`; 0: never). Off by default: the stack cannot know the app's protocol
/// (iperf3's control connection is silent for the whole test, a Redis client between
/// commands); apps time out their own sessions, and under pressure the pool resets
/// the longest-idle connection (see [`EVICT_IDLE_S`]).
pub const IDLE_S: u64 = 0;
/// Established connections at once (`net.conns`): each holds a receive ring in the
/// shared heap and a smoltcp socket (2 MiB of private memory).
pub const CONNS: usize = 8;
/// Seconds between keep-alive probes on an idle connection (`net.keepalive`; 0: off).
/// A peer silent for [`DEAD_PEER_PROBES`] intervals (no answer to three probes, or no
/// acknowledgement of data we sent) is taken for dead and its connection reset.
pub const KEEPALIVE_S: u64 = 60;
/// Keep-alive intervals without a word from the peer before its connection is reset.
pub const DEAD_PEER_PROBES: u64 = 3;
/// A connection at least this idle may be reset to admit a new one when the pool is
/// full (the longest-idle first, as Nginx closes idle keep-alive connections when it
/// runs out of them). A busier pool refuses the new connection instead.
pub const EVICT_IDLE_S: u64 = 1;

/// Receive buffer of a TCP socket by default: 2 MiB (window scale 5), room for ~30 TSO
/// super-frames in flight. Measured against 1 MiB (iperf2, recv=64 KiB, 4 s runs
/// interleaved on a quiet host): 1 compartment 6.84-7.29 Gbit/s against 5.37-6.37, 2
/// compartments 6.86-6.94 against 5.33-5.93 (fewer ACKs and sleeps: the larger window
/// covers the vCPU's sleep and wake-up); 4 MiB gained nothing more. An image serving
/// many small clients (Redis) sets a smaller one and more connections
/// ([`Limits::DEFAULT`] is the starting point).
pub const SOCKET_RX: usize = 2 << 20;

/// The stack's bounds and timeouts (nanoseconds; 0: off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub syn_queue: usize,
    pub handshake_ns: u64,
    pub idle_ns: u64,
    pub conns: usize,
    pub keepalive_s: u64,
    /// Receive buffer of each TCP socket, in bytes.
    pub socket_rx: usize,
    /// Send buffer of each TCP socket, in bytes (default [`crate::SEND_BUFFER`]): what
    /// can be in flight unacknowledged, so what bounds a sending stream's rate.
    pub socket_tx: usize,
}

const NS: u64 = 1_000_000_000;

impl Limits {
    /// The defaults, for an image to start its own from (`..Limits::DEFAULT`).
    pub const DEFAULT: Limits = Limits {
        syn_queue: SYN_QUEUE,
        handshake_ns: HANDSHAKE_S * NS,
        idle_ns: IDLE_S * NS,
        conns: CONNS,
        keepalive_s: KEEPALIVE_S,
        socket_rx: SOCKET_RX,
        socket_tx: crate::SEND_BUFFER,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Largest accepted value of each count, against typos that would ask for more
/// sockets than any compartment has memory for.
const MAX_COUNT: usize = 256;
/// Largest accepted number of seconds (a day).
const MAX_SECONDS: u64 = 86_400;

impl Limits {
    /// Reads `net.synq=N` (1..=256), `net.handshake=SECS` (1..), `net.idle=SECS` (0:
    /// off), `net.conns=N` (1..=256) and `net.keepalive=SECS` (0: off) through `get`,
    /// over the defaults; a bad value keeps the default and is described in the
    /// returned messages.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> (Limits, Vec<String>) {
        Limits::parse_over(Limits::DEFAULT, get)
    }

    /// [`Limits::parse`] over an image's own defaults `base`.
    pub fn parse_over<'a>(
        base: Limits,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> (Limits, Vec<String>) {
        let mut l = base;
        let mut problems = Vec::new();
        let mut count = |key: &str, min: usize, slot: &mut usize| {
            if let Some(text) = get(key) {
                match text.parse::<usize>() {
                    Ok(n) if (min..=MAX_COUNT).contains(&n) => *slot = n,
                    _ => problems.push(format!(
                        "net: bad {key}={text}: want {min}..={MAX_COUNT}; using {slot}"
                    )),
                }
            }
        };
        count("net.synq", 1, &mut l.syn_queue);
        count("net.conns", 1, &mut l.conns);
        let mut seconds = |key: &str, min: u64, slot: &mut u64, unit: u64| {
            if let Some(text) = get(key) {
                match text.parse::<u64>() {
                    Ok(s) if (min..=MAX_SECONDS).contains(&s) => *slot = s * unit,
                    _ => problems.push(format!(
                        "net: bad {key}={text}: want seconds, {min}..={MAX_SECONDS}; using {}",
                        *slot / unit
                    )),
                }
            }
        };
        seconds("net.handshake", 1, &mut l.handshake_ns, NS);
        seconds("net.idle", 0, &mut l.idle_ns, NS);
        seconds("net.keepalive", 0, &mut l.keepalive_s, 1);
        (l, problems)
    }
}

/// A port's half-open connections in arrival order, at most `cap`, each with the time
/// (ns) it arrived.
pub struct SynQueue<H> {
    cap: usize,
    entries: VecDeque<(H, u64)>,
}

/// What to do with a queued entry ([`SynQueue::retain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Remove,
}

impl<H: Copy + PartialEq> SynQueue<H> {
    pub fn new(cap: usize) -> Self {
        SynQueue {
            cap: cap.max(1),
            entries: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Queues `h` (arrived at `now`); if that makes one too many, the oldest entry
    /// leaves the queue and is returned (to be dropped).
    pub fn push(&mut self, h: H, now: u64) -> Option<H> {
        self.entries.push_back((h, now));
        if self.entries.len() > self.cap {
            return self.entries.pop_front().map(|(h, _)| h);
        }
        None
    }

    /// Takes the oldest entry out.
    pub fn pop_oldest(&mut self) -> Option<H> {
        self.entries.pop_front().map(|(h, _)| h)
    }

    /// Keeps the entries for which `f(handle, arrived)` says [`Verdict::Keep`].
    pub fn retain(&mut self, mut f: impl FnMut(H, u64) -> Verdict) {
        self.entries
            .retain(|&(h, since)| f(h, since) == Verdict::Keep);
    }

    pub fn iter(&self) -> impl Iterator<Item = (H, u64)> + '_ {
        self.entries.iter().copied()
    }
}

/// What becomes of a SYN queue entry in a poll round ([`half_open`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfOpen {
    /// Still in its handshake, in time: stays.
    Wait,
    /// Established, waiting for a pool slot, in time: stays (and asks for room).
    WaitForSlot,
    /// Established and admitted to the pool: ready to accept.
    Admitted,
    /// Its handshake took longer than the limit: dropped, silently.
    TimedOut,
    /// Established, but no slot came within the limit: reset.
    Refused,
    /// The peer reset it and smoltcp made it listen again: a listener.
    Listening,
    /// Closed (reset, or timed out by smoltcp): listens again.
    Gone,
}

/// The rule for a SYN queue entry in `state` that arrived at `arrived` (ns), at
/// `now`, with handshake limit `limit`; `admit` takes a pool slot if one is free
/// (asked only for an established connection).
pub fn half_open(
    state: TcpState,
    arrived: u64,
    now: u64,
    limit: u64,
    admit: impl FnOnce() -> bool,
) -> HalfOpen {
    let late = now.saturating_sub(arrived) >= limit;
    match state {
        TcpState::SynReceived if late => HalfOpen::TimedOut,
        TcpState::SynReceived => HalfOpen::Wait,
        // smoltcp sends a half-open socket back to LISTEN on a RST from its peer.
        TcpState::Listen => HalfOpen::Listening,
        TcpState::Closed | TcpState::TimeWait => HalfOpen::Gone,
        // Established, or further along (the peer's data and FIN may have come too).
        _ if admit() => HalfOpen::Admitted,
        _ if late => HalfOpen::Refused,
        _ => HalfOpen::WaitForSlot,
    }
}

/// A connection's ring: one of the pool's reserved floor rings, or a larger one
/// allocated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring<B> {
    Floor(B),
    Big(B),
}

impl<B: Copy> Ring<B> {
    pub fn buffer(&self) -> B {
        match *self {
            Ring::Floor(b) | Ring::Big(b) => b,
        }
    }
}

/// The receive rings of the established connections: at most `slots` connections
/// are admitted, and every admitted connection gets a ring.
///
/// The guarantee comes from a floor reserved up front: one small ring per slot,
/// allocated when the stack starts, so no allocation can fail (or find the heap
/// fragmented) when a connection arrives. A connection gets a larger ring when the
/// heap has room for one beyond the floor (the first connection gets the largest, as
/// before the pool), else a floor ring: an admitted connection holds at most one ring,
/// so a floor ring is free for each admitted one without a larger ring.
pub struct RingPool<B> {
    slots: usize,
    admitted: usize,
    floor: Vec<B>,
}

impl<B: Copy> RingPool<B> {
    /// A pool with one slot per ring of `floor`.
    pub fn new(floor: Vec<B>) -> Self {
        RingPool {
            slots: floor.len(),
            admitted: 0,
            floor,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn admitted(&self) -> usize {
        self.admitted
    }

    pub fn is_full(&self) -> bool {
        self.admitted >= self.slots
    }

    /// Admits a connection if a slot is free.
    pub fn admit(&mut self) -> bool {
        if self.is_full() {
            return false;
        }
        self.admitted += 1;
        true
    }

    /// The ring of an admitted connection that has none yet: `big()` if that finds
    /// one, else a floor ring. `None` only if the caller breaks the rules (no
    /// admission, or a second ring for one connection).
    pub fn ring(&mut self, big: impl FnOnce() -> Option<B>) -> Option<Ring<B>> {
        if let Some(b) = big() {
            return Some(Ring::Big(b));
        }
        self.floor.pop().map(Ring::Floor)
    }

    /// Takes back a ring [`RingPool::ring`] gave (the connection keeps its slot).
    /// Returns a larger ring's buffer for the caller to free (floor rings stay
    /// reserved).
    pub fn put_back(&mut self, ring: Ring<B>) -> Option<B> {
        match ring {
            Ring::Floor(b) => {
                self.floor.push(b);
                None
            }
            Ring::Big(b) => Some(b),
        }
    }

    /// An admitted connection is gone; `ring` is the one it held, if any (see
    /// [`RingPool::put_back`]).
    pub fn release(&mut self, ring: Option<Ring<B>>) -> Option<B> {
        self.admitted = self.admitted.saturating_sub(1);
        self.put_back(ring?)
    }
}

/// The ring size each of `conns` connections gets when they share `budget` bytes of
/// heap equally: the first of `sizes` (largest first) that is at most `largest` and
/// whose buffers (`buffer_len` of it, header included) fit `conns` times in `budget`.
/// `None` when not even the smallest does (the connections keep floor rings).
///
/// Why equal shares: a connection's bytes move from its socket into its ring once per
/// poll round of the stack, so a stream's rate follows its ring's size; giving each
/// arriving connection the largest ring the heap still had made `iperf3 -P 4` streams
/// run at 4.66, 1.86, 0.45 and 0.45 Gbit/s.
pub fn fair_ring(
    sizes: &[usize],
    largest: usize,
    budget: usize,
    conns: usize,
    buffer_len: impl Fn(usize) -> usize,
) -> Option<usize> {
    let conns = conns.max(1);
    sizes
        .iter()
        .copied()
        .filter(|&size| size <= largest)
        .find(|&size| {
            buffer_len(size)
                .checked_mul(conns)
                .is_some_and(|n| n <= budget)
        })
}

/// Of `conns` (an id and the time it last moved a byte), the one idle longest, if it
/// has been idle at least `min_idle` ns by `now`.
pub fn longest_idle<I>(
    conns: impl IntoIterator<Item = (I, u64)>,
    now: u64,
    min_idle: u64,
) -> Option<I> {
    conns
        .into_iter()
        .filter(|&(_, last)| now.saturating_sub(last) >= min_idle)
        .min_by_key(|&(_, last)| last)
        .map(|(id, _)| id)
}

/// The TCP flow of an Ethernet frame that carries TCP payload (IPv4, not a fragment):
/// the peer's address and port and our port in one number; `None` for anything else
/// (ARP, a pure ACK, a SYN). The link hands the stack one flow's payload per poll
/// round, so that the connections' bytes reach their rings in the order they came.
pub fn payload_flow(frame: &[u8]) -> Option<u64> {
    const ETH: usize = 14;
    let ip = frame.get(ETH..)?;
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = ip.get(ihl..total.min(ip.len()))?;
    if ihl < 20 || tcp.len() < 20 {
        return None;
    }
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if tcp.len() <= data_offset {
        return None;
    }
    let src = u64::from(u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]));
    let sport = u64::from(u16::from_be_bytes([tcp[0], tcp[1]]));
    let dport = u64::from(u16::from_be_bytes([tcp[2], tcp[3]]));
    Some(src << 32 | sport << 16 | dport)
}

/// Is the Ethernet frame `frame` a TCP/IPv4 connection request: SYN without ACK or
/// RST, not a fragment? (A few header bytes, not the payload: the driver link asks
/// this of every received frame.)
pub fn is_syn(frame: &[u8]) -> bool {
    const ETH: usize = 14;
    let Some(ip) = frame.get(ETH..) else {
        return false;
    };
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return false;
    }
    // More fragments, or a fragment offset: not a whole first segment.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return false;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    match ip.get(ihl + 13) {
        Some(&flags) if ihl >= 20 => flags & 0x16 == 0x02,
        _ => false,
    }
}
