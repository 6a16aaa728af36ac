//! The policies that keep the stack from being locked out: its limits and their
//! arguments, the SYN queue, the ring pool, the choice of a connection to reset, and
//! the SYN test on received frames.

use flexos_net::lockout::{
    CONNS, HANDSHAKE_S, HalfOpen, IDLE_S, KEEPALIVE_S, Limits, Ring, RingPool, SYN_QUEUE, SynQueue,
    Verdict, fair_ring, half_open, is_syn, longest_idle, payload_flow,
};
use flexos_net::tcp_end::TcpState;
use flexos_testkit::frames::{
    TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpEnds, tcp_frame, tcp_syn, udp_frame,
};

const S: u64 = 1_000_000_000;

fn args<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
    move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[test]
fn limits_default_and_parse() {
    let (l, problems) = Limits::parse(args(&[]));
    assert!(problems.is_empty());
    assert_eq!(l, Limits::default());
    assert_eq!(
        (
            l.syn_queue,
            l.handshake_ns,
            l.idle_ns,
            l.conns,
            l.keepalive_s
        ),
        (SYN_QUEUE, HANDSHAKE_S * S, IDLE_S * S, CONNS, KEEPALIVE_S)
    );
    assert_eq!((SYN_QUEUE, HANDSHAKE_S, IDLE_S, CONNS), (2, 5, 0, 8));
    let (l, problems) = Limits::parse(args(&[
        ("net.synq", "4"),
        ("net.handshake", "1"),
        ("net.idle", "30"),
        ("net.conns", "16"),
        ("net.keepalive", "0"),
        ("net.spin", "7"),
    ]));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        l,
        Limits {
            syn_queue: 4,
            handshake_ns: S,
            idle_ns: 30 * S,
            conns: 16,
            keepalive_s: 0,
            socket_rx: 2 << 20,
            socket_tx: 64 << 10,
        }
    );
}

#[test]
fn an_image_sets_its_own_defaults_and_arguments_still_win() {
    let base = Limits {
        conns: 64,
        socket_rx: 256 << 10,
        ..Limits::DEFAULT
    };
    let (l, problems) = Limits::parse_over(base, args(&[]));
    assert!(problems.is_empty());
    assert_eq!(l, base);
    let (l, problems) = Limits::parse_over(base, args(&[("net.conns", "200")]));
    assert!(problems.is_empty());
    assert_eq!((l.conns, l.socket_rx), (200, 256 << 10));
    // A bad value keeps the image's default, not the stack's.
    let (l, problems) = Limits::parse_over(base, args(&[("net.conns", "0")]));
    assert_eq!(l.conns, 64);
    assert_eq!(problems, ["net: bad net.conns=0: want 1..=256; using 64"]);
}

#[test]
fn bad_limits_keep_the_default_and_say_why() {
    let (l, problems) = Limits::parse(args(&[
        ("net.synq", "0"),
        ("net.handshake", "0"),
        ("net.idle", "soon"),
        ("net.conns", "257"),
        ("net.keepalive", "-1"),
    ]));
    assert_eq!(l, Limits::default());
    assert_eq!(
        problems,
        [
            "net: bad net.synq=0: want 1..=256; using 2",
            "net: bad net.conns=257: want 1..=256; using 8",
            "net: bad net.handshake=0: want seconds, 1..=86400; using 5",
            "net: bad net.idle=soon: want seconds, 0..=86400; using 0",
            "net: bad net.keepalive=-1: want seconds, 0..=86400; using 60",
        ]
    );
}

#[test]
fn the_syn_queue_drops_its_oldest_entry_when_full() {
    let mut q = SynQueue::new(2);
    assert_eq!(q.push(1, 10), None);
    assert_eq!(q.push(2, 20), None);
    assert_eq!(q.push(3, 30), Some(1));
    assert_eq!(q.push(4, 40), Some(2));
    assert_eq!(q.iter().collect::<Vec<_>>(), [(3, 30), (4, 40)]);
    // 10,000 SYNs: the queue never grows past its capacity, each push but the first
    // two drops one, and the survivors are the newest.
    let mut q = SynQueue::new(2);
    let dropped = (0..10_000u32)
        .filter(|&i| q.push(i, u64::from(i)).is_some())
        .count();
    assert_eq!((dropped, q.len()), (9_998, 2));
    assert_eq!(q.iter().map(|(h, _)| h).collect::<Vec<_>>(), [9_998, 9_999]);
    assert_eq!(q.pop_oldest(), Some(9_998));
    assert_eq!(q.pop_oldest(), Some(9_999));
    assert_eq!(q.pop_oldest(), None);
    // A capacity of 0 would drop every entry at once: it is one.
    assert_eq!(SynQueue::<u8>::new(0).capacity(), 1);
}

#[test]
fn half_open_entries_time_out_and_established_ones_wait_for_a_slot() {
    use HalfOpen::{Admitted, Gone, Listening, Refused, TimedOut, Wait, WaitForSlot};
    use TcpState::{CloseWait, Closed, Established, FinWait1, Listen, SynReceived, TimeWait};
    let never = || -> bool { panic!("a slot is only asked for an established connection") };
    // In its handshake: waits, until the limit.
    assert_eq!(half_open(SynReceived, 2 * S, 6 * S, 5 * S, never), Wait);
    assert_eq!(half_open(SynReceived, 2 * S, 7 * S, 5 * S, never), TimedOut);
    // A clock that reads earlier than the arrival times nothing out.
    assert_eq!(half_open(SynReceived, 9 * S, 0, 5 * S, never), Wait);
    assert_eq!(half_open(Listen, 0, 9 * S, 5 * S, never), Listening);
    assert_eq!(half_open(Closed, 0, 0, 5 * S, never), Gone);
    assert_eq!(half_open(TimeWait, 0, 0, 5 * S, never), Gone);
    // Established (or further): admitted if there is a slot, even late...
    for state in [Established, CloseWait, FinWait1] {
        assert_eq!(
            half_open(state, 0, 9 * S, 5 * S, || true),
            Admitted,
            "{state:?}"
        );
    }
    // ...else it waits for one until the limit, then is refused.
    assert_eq!(
        half_open(Established, 2 * S, 6 * S, 5 * S, || false),
        WaitForSlot
    );
    assert_eq!(
        half_open(Established, 2 * S, 7 * S, 5 * S, || false),
        Refused
    );
}

#[test]
fn the_queue_keeps_what_the_rule_keeps() {
    let mut q = SynQueue::new(4);
    q.push('a', 0);
    q.push('b', 2 * S);
    q.push('c', 3 * S);
    q.retain(|h, _| {
        if h == 'b' {
            Verdict::Remove
        } else {
            Verdict::Keep
        }
    });
    assert_eq!(q.iter().collect::<Vec<_>>(), [('a', 0), ('c', 3 * S)]);
    q.retain(|_, since| {
        if since < S {
            Verdict::Remove
        } else {
            Verdict::Keep
        }
    });
    assert_eq!(q.iter().collect::<Vec<_>>(), [('c', 3 * S)]);
}

#[test]
fn an_admitted_connection_always_gets_a_ring_while_the_pool_has_a_slot() {
    let mut pool = RingPool::new(vec![100, 101, 102]);
    assert_eq!((pool.slots(), pool.admitted()), (3, 0));
    // The heap has room for one large ring: the first connection gets it, the others
    // floor rings, and a fourth is not admitted.
    let mut heap = vec![900];
    let rings: Vec<Ring<u32>> = (0..3)
        .map(|_| {
            assert!(pool.admit());
            pool.ring(|| heap.pop())
                .expect("a ring for an admitted connection")
        })
        .collect();
    assert_eq!(rings, [Ring::Big(900), Ring::Floor(102), Ring::Floor(101)]);
    assert!(pool.is_full());
    assert!(!pool.admit());
    // Released: a floor ring goes back to the floor, a large one to the caller.
    assert_eq!(pool.release(Some(rings[1])), None);
    assert_eq!(pool.release(Some(rings[0])), Some(900));
    assert_eq!(pool.admitted(), 1);
    // A connection admitted and dropped before it had a ring frees its slot only.
    assert!(pool.admit());
    assert_eq!(pool.release(None), None);
    // Whatever the order of arrivals and departures, an admitted connection with no
    // larger ring available finds a floor ring.
    let mut live = vec![rings[2]];
    let mut seed = 7u64;
    for step in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if seed.is_multiple_of(2) && pool.admit() {
            let ring = pool.ring(|| seed.is_multiple_of(3).then_some(1000 + step));
            live.push(ring.unwrap_or_else(|| panic!("no ring at step {step}")));
        } else if !live.is_empty() {
            let ring = live.swap_remove((seed % live.len() as u64) as usize);
            let big = pool.release(Some(ring));
            assert_eq!(big, matches!(ring, Ring::Big(_)).then(|| ring.buffer()));
        }
        assert_eq!(pool.admitted(), live.len());
        assert!(live.len() <= 3);
    }
}

#[test]
fn connections_sharing_the_heap_get_equal_rings_as_large_as_fit() {
    const K: usize = 1 << 10;
    let sizes = [
        2048 * K,
        1024 * K,
        512 * K,
        256 * K,
        128 * K,
        64 * K,
        16 * K,
    ];
    let header = |size: usize| size + 128;
    // A 2-compartment arena's worth (2.6 MiB): one connection gets 2 MiB, two 1 MiB,
    // iperf3 -P 4 (five with its control connection) 512 KiB each; in exactly 5 x 512
    // KiB the rings' headers do not fit, so 256 KiB.
    let budget = 2600 * K;
    assert_eq!(
        fair_ring(&sizes, usize::MAX, budget, 1, header),
        Some(2048 * K)
    );
    assert_eq!(
        fair_ring(&sizes, usize::MAX, budget, 2, header),
        Some(1024 * K)
    );
    assert_eq!(
        fair_ring(&sizes, usize::MAX, budget, 5, header),
        Some(512 * K)
    );
    assert_eq!(
        fair_ring(&sizes, usize::MAX, 5 * 512 * K, 5, header),
        Some(256 * K)
    );
    // 0 connections count as one (the size a newcomer would get).
    assert_eq!(
        fair_ring(&sizes, usize::MAX, budget, 0, header),
        Some(2048 * K)
    );
    // A cap (the app beside the stack, or a fragmented heap) limits the size.
    assert_eq!(fair_ring(&sizes, 512 * K, budget, 1, header), Some(512 * K));
    // Too many for the smallest size: floor rings.
    assert_eq!(fair_ring(&sizes, usize::MAX, budget, 200, header), None);
    assert_eq!(fair_ring(&sizes, usize::MAX, 0, 1, header), None);
    // Never an overflow, however many connections.
    assert_eq!(
        fair_ring(&sizes, usize::MAX, usize::MAX, usize::MAX, header),
        None
    );
    // Every answer fits and is the largest that does.
    for conns in 1..40 {
        for budget in (0..4096 * K).step_by(37 * K) {
            match fair_ring(&sizes, usize::MAX, budget, conns, header) {
                Some(size) => {
                    assert!(header(size) * conns <= budget);
                    let bigger = sizes.iter().filter(|&&s| s > size);
                    assert!(bigger.clone().all(|&s| header(s) * conns > budget));
                }
                None => assert!(header(16 * K) * conns > budget),
            }
        }
    }
}

#[test]
fn a_ring_put_back_keeps_its_slot() {
    let mut pool = RingPool::new(vec![1]);
    assert!(pool.admit());
    let ring = pool.ring(|| None).unwrap();
    assert_eq!(pool.put_back(ring), None);
    assert_eq!(pool.admitted(), 1);
    assert_eq!(pool.ring(|| None), Some(Ring::Floor(1)));
    assert_eq!(pool.put_back(Ring::Big(7)), Some(7));
}

#[test]
fn the_longest_idle_connection_is_reset_first_if_idle_long_enough() {
    let conns = [(0, 5 * S), (1, 2 * S), (2, 9 * S)];
    assert_eq!(longest_idle(conns, 10 * S, S), Some(1));
    // Idle less than the minimum: nobody.
    assert_eq!(longest_idle(conns, 10 * S, 9 * S), None);
    assert_eq!(longest_idle(conns, 10 * S, 8 * S), Some(1));
    assert_eq!(longest_idle(Vec::<(u8, u64)>::new(), 10 * S, 0), None);
}

fn ends() -> TcpEnds {
    TcpEnds {
        src_mac: [2, 0, 0, 0, 0, 0x66],
        dst_mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        src_ip: [198, 18, 0, 1],
        dst_ip: [10, 0, 0, 2],
        src_port: 40_000,
        dst_port: 5201,
    }
}

#[test]
fn only_a_bare_syn_is_a_connection_request() {
    assert!(is_syn(&tcp_syn(&ends(), 1)));
    for flags in [
        TCP_SYN | TCP_ACK,
        TCP_SYN | TCP_RST,
        TCP_ACK,
        TCP_FIN | TCP_ACK,
        TCP_RST,
        0,
    ] {
        assert!(
            !is_syn(&tcp_frame(&ends(), flags, 1, 2)),
            "flags {flags:#x}"
        );
    }
    // SYN with FIN (a bogus combination) is still a request as far as listeners go.
    assert!(is_syn(&tcp_frame(&ends(), TCP_SYN | TCP_FIN, 1, 0)));
    assert!(!is_syn(&udp_frame([1; 6], [2; 6], 5201, &[TCP_SYN; 32])));
}

#[test]
fn malformed_or_fragmented_frames_are_not_syns() {
    let syn = tcp_syn(&ends(), 1);
    // Every truncation: never a SYN, never a panic.
    for n in 0..syn.len() - 10 {
        assert!(!is_syn(&syn[..n]), "{n} bytes");
    }
    let mut ipv6 = syn.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert!(!is_syn(&ipv6));
    let mut version = syn.clone();
    version[14] = 0x65;
    assert!(!is_syn(&version));
    let mut fragment = syn.clone();
    fragment[14 + 6] = 0x20; // more fragments
    assert!(!is_syn(&fragment));
    let mut offset = syn.clone();
    offset[14 + 7] = 1;
    assert!(!is_syn(&offset));
    let mut short_ihl = syn.clone();
    short_ihl[14] = 0x44;
    assert!(!is_syn(&short_ihl));
    // Options in the IP header move the TCP header: the flags are found after them.
    let mut options = syn[..34].to_vec();
    options[14] = 0x46;
    options.extend([1, 1, 1, 1]);
    options.extend(&syn[34..]);
    assert!(is_syn(&options));
}

/// A TCP frame of `ends` carrying `payload` (the IPv4 total length patched to match).
fn with_payload(ends: &TcpEnds, payload: &[u8]) -> Vec<u8> {
    let mut f = tcp_frame(ends, TCP_ACK, 1, 1);
    f.extend_from_slice(payload);
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f
}

#[test]
fn a_frame_with_payload_names_its_flow_and_nothing_else_does() {
    let a = ends();
    let flow = payload_flow(&with_payload(&a, b"*1\r\n$4\r\nPING\r\n")).unwrap();
    assert_eq!(flow & 0xffff, u64::from(a.dst_port));
    assert_eq!(flow >> 16 & 0xffff, u64::from(a.src_port));
    let b = TcpEnds {
        src_port: a.src_port + 1,
        ..ends()
    };
    assert_ne!(payload_flow(&with_payload(&b, b"x")), Some(flow));
    // No payload: a pure ACK, a SYN, UDP.
    assert_eq!(payload_flow(&tcp_frame(&a, TCP_ACK, 1, 1)), None);
    assert_eq!(payload_flow(&tcp_syn(&a, 1)), None);
    assert_eq!(
        payload_flow(&udp_frame([1; 6], [2; 6], 5201, b"data")),
        None
    );
    // Every truncation of a data frame: no panic (the IP length beyond the frame is
    // clipped to what is there).
    let whole = with_payload(&a, b"abcdef");
    for n in 0..whole.len() {
        let _ = payload_flow(&whole[..n]);
    }
    // A fragment is not a flow's payload.
    let mut frag = whole.clone();
    frag[20] |= 0x20;
    assert_eq!(payload_flow(&frag), None);
}
