//! The guest's network stack cannot be locked out (issue 17): spoofed SYNs, idle
//! connections and garbage iperf3 control connections, alone and together, and a stock
//! client still gets a normal transfer; the handshake and idle timeouts each fire, and a
//! pool full of idle connections makes room for a new client.
//!
//! Every test boots the real `iperf` image in a network namespace of its own
//! ([`NetNs`]) and sends the hostile traffic from inside that namespace: spoofed SYNs as
//! hand-built frames ([`flexos_testkit::frames::tcp_syn`]) on a packet socket on the
//! tap, idle and garbage connections as ordinary TCP sockets. Tests synchronise on
//! events (a guest line, a ping answered after the flood, a socket that becomes
//! readable, a client's exit), never on sleeps; the only time limit asserted is the
//! issue's goal, a client run under `timeout 5`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use flexos_e2e::iperf::{iperf2_bytes, iperf3_received, tests_reported, with_guest};
use flexos_e2e::netns::{NetNs, GUEST_IP, TAP};
use flexos_e2e::{require_tool, wait_for_line, Outcome, TIMEOUT};
use flexos_testkit::frames::{tcp_syn, TcpEnds};
use flexos_testkit::Rng;

/// The guest's MAC (the monitor's default for `--net`).
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The source MAC of the spoofed frames (locally administered, no such host).
const SPOOF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
/// Half-open connections the guest keeps per port (`net.synq`'s default); the rest of a
/// flood is dropped, oldest first.
const SYN_QUEUE: u64 = 2;

/// A namespace whose tap queues a whole flood: the tap drops what its reader (the
/// monitor) has not taken yet beyond its queue length, and the tests want every SYN to
/// reach the guest.
fn flood_namespace(tag: &str) -> NetNs {
    let ns = NetNs::with_tap(tag);
    ns.ip(&["link", "set", TAP, "txqueuelen", "20000"]);
    ns
}

/// Sends `n` SYNs to `port` of the guest from spoofed sources (alternately on the link,
/// 10.0.0.3-254, where the guest's SYN-ACK waits for an ARP answer that never comes, and
/// off it, 198.18/15, where the guest has no route), then waits until the guest has
/// parsed them all: a ping sent after them is answered (frames reach the guest in
/// order, and it answers an echo when it parses it).
fn syn_flood(ns: &NetNs, port: u16, n: u32) {
    require_tool("ping", "iputils-ping");
    let dropped_before = ns.link_counter(TAP, "tx_dropped");
    let socket = ns.frame_socket();
    let mut rng = Rng::new(17);
    for i in 0..n {
        let src_ip = if i % 2 == 0 {
            [10, 0, 0, 3 + (i / 2 % 252) as u8]
        } else {
            [198, 18 + (i >> 16 & 1) as u8, (i >> 8) as u8, i as u8]
        };
        let ends = TcpEnds {
            src_mac: SPOOF_MAC,
            dst_mac: GUEST_MAC,
            src_ip,
            dst_ip: [10, 0, 0, 2],
            src_port: 1024 + (i % 60_000) as u16,
            dst_port: port,
        };
        socket
            .send(&tcp_syn(&ends, rng.next() as u32))
            .unwrap_or_else(|e| panic!("sending spoofed SYN {i}: {e}"));
    }
    let ping = ns.run_program("ping", ["-c", "1", "-W", "20", GUEST_IP]);
    ping.assert_status(0);
    assert_eq!(
        ns.link_counter(TAP, "tx_dropped"),
        dropped_before,
        "the tap dropped spoofed SYNs: not all {n} reached the guest"
    );
}

/// Opens a TCP connection to the guest's `port` from inside the namespace.
fn connect(ns: &NetNs, port: u16) -> TcpStream {
    let stream = ns
        .enter(|| TcpStream::connect((GUEST_IP, port)))
        .unwrap_or_else(|e| panic!("connecting to {GUEST_IP}:{port}: {e}"));
    // Only a guard against a hang: every read below waits for an event.
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// How a connection the guest ended looked from our side.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// FIN: the guest closed it.
    Eof,
    /// RST: the guest (or its stack) reset it.
    Reset,
}

/// Reads `stream` until the guest ends it; returns how, and what it sent first.
#[track_caller]
fn read_to_end(stream: &mut TcpStream) -> (Ended, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (Ended::Eof, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (Ended::Reset, got),
            Err(e) => panic!(
                "the guest did not end the connection within {TIMEOUT:?} ({e}); it sent {got:?}"
            ),
        }
    }
}

/// Waits until the guest has reacted to what was sent on `stream`: it sent something
/// or ended the connection. Returns the first bytes (empty: ended).
#[track_caller]
fn first_answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Vec::new(),
        Err(e) => panic!("the guest did not answer within {TIMEOUT:?}: {e}"),
    }
}

/// A control connection to the iperf3 port that sends 40 random bytes and is left
/// open: as long as a cookie (37) and three bytes of the parameters' length, so a
/// server that takes any 37 bytes for a cookie waits for the fourth byte for ever,
/// holding the one iperf3 test slot.
fn garbage_control(ns: &NetNs) -> TcpStream {
    let mut s = connect(ns, 5201);
    let mut rng = Rng::new(40);
    let junk: Vec<u8> = (0..40).map(|_| rng.next() as u8).collect();
    s.write_all(&junk).unwrap();
    s
}

/// Four idle connections, two to each server, left open.
fn idle_connections(ns: &NetNs) -> Vec<TcpStream> {
    [5001, 5001, 5201, 5201]
        .into_iter()
        .map(|port| connect(ns, port))
        .collect()
}

/// A stock iperf3 client sending 16 MiB.
fn iperf3(ns: &NetNs) -> Outcome {
    ns.run_program("iperf3", ["-c", GUEST_IP, "-n", "16M", "-J"])
}

/// A stock iperf2 client sending 16 MiB.
fn iperf2(ns: &NetNs) -> Outcome {
    ns.run_program("iperf", ["-c", GUEST_IP, "-n", "16M", "-y", "C"])
}

/// The stack's lockout counters from the guest's last `iperf: net:` line: half-open
/// connections dropped (queue full) and timed out, connections reset idle, refused.
fn lockout_counters(guest: &Outcome) -> [u64; 4] {
    let line = guest
        .stdout
        .lines()
        .rfind(|l| l.contains("iperf: net: "))
        .unwrap_or_else(|| panic!("no `iperf: net:` line\n{guest:?}"));
    let at = line
        .find("lockout: ")
        .unwrap_or_else(|| panic!("no lockout counters in {line}"));
    let numbers: Vec<u64> = line[at + "lockout: ".len()..]
        .split(", ")
        .map(|part| {
            part.split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{part} in {line}"))
        })
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("four counters in {line}"))
}

#[test]
fn after_ten_thousand_spoofed_syns_a_stock_iperf3_client_gets_a_normal_transfer() {
    // Three compartments: the frames cross from netdev to net in relay rings.
    let ns = flood_namespace("syn");
    let (guest, client) = with_guest(&ns, 3, &["count=1"], |_| {
        syn_flood(&ns, 5201, 10_000);
        iperf3(&ns)
    });
    guest.assert_status(0);
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&client))],
        "{guest:?}"
    );
    // Every SYN reached a listener and was queued: all but the last few were dropped,
    // oldest first, or timed out; none took a connection's resources.
    let [dropped, timed_out, _, refused] = lockout_counters(&guest);
    assert!(
        dropped + timed_out >= 10_000 - SYN_QUEUE,
        "{dropped} + {timed_out}\n{guest:?}"
    );
    assert_eq!(refused, 0, "{guest:?}");
}

#[test]
fn idle_connections_to_both_servers_leave_room_for_iperf3_and_iperf2() {
    let ns = NetNs::with_tap("idle");
    let (guest, (three, two)) = with_guest(&ns, 2, &["count=2"], |_| {
        let idle = idle_connections(&ns);
        let three = iperf3(&ns);
        let two = iperf2(&ns);
        drop(idle);
        (three, two)
    });
    guest.assert_status(0);
    assert_eq!(
        tests_reported(&guest),
        [
            ("iperf3".to_string(), 1, iperf3_received(&three)),
            ("iperf2".to_string(), 1, iperf2_bytes(&two)),
        ],
        "{guest:?}"
    );
}

#[test]
fn a_garbage_iperf3_control_connection_is_closed_and_the_next_client_is_served() {
    let ns = NetNs::with_tap("junkctl");
    let (guest, (client, ended)) = with_guest(&ns, 1, &["count=1"], |_| {
        let mut garbage = garbage_control(&ns);
        // The guest has read the garbage once it answers or ends the connection.
        let answer = first_answer(&mut garbage);
        let client = iperf3(&ns);
        let (how, rest) = read_to_end(&mut garbage);
        (client, (answer, how, rest))
    });
    guest.assert_status(0);
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&client))],
        "{guest:?}"
    );
    // Closed without a word: nothing in it was an iperf3 cookie.
    assert_eq!(ended, (vec![], Ended::Eof, vec![]), "{guest:?}");
    assert!(
        guest
            .stdout
            .contains("iperf: iperf3 connection closed: not an iperf3 cookie"),
        "{guest:?}"
    );
}

#[test]
fn a_silent_iperf3_control_connection_is_closed_after_the_idle_limit() {
    let ns = NetNs::with_tap("mute");
    let (guest, (client, (answer, how))) = with_guest(&ns, 2, &["count=1", "idle=1"], |_| {
        // A well-formed cookie, then nothing: a client that stalls before its
        // parameters holds the one iperf3 test slot until the guest gives up on it.
        let mut mute = connect(&ns, 5201);
        mute.write_all(b"abcdefghijklmnopqrstuvwxyz234567abcd\0")
            .unwrap();
        let (how, answer) = read_to_end(&mut mute);
        (iperf3(&ns), (answer, how))
    });
    guest.assert_status(0);
    // PARAM_EXCHANGE (9), then the end.
    assert_eq!((answer, how), (vec![9], Ended::Eof), "{guest:?}");
    assert!(
        guest
            .stdout
            .contains("iperf: iperf3 control connection closed: no progress for 1 s"),
        "{guest:?}"
    );
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&client))],
        "{guest:?}"
    );
}

/// The goal: after 10,000 spoofed SYNs, 4 idle connections and a garbage
/// control connection, a stock `iperf3 -c ... -t 2` completes normally within 5 s of
/// starting.
#[test]
fn syn_flood_idle_connections_and_garbage_together_still_leave_iperf3_a_normal_transfer() {
    require_tool("timeout", "coreutils");
    let ns = flood_namespace("goal");
    let (guest, client) = with_guest(&ns, 2, &["count=1"], |_| {
        syn_flood(&ns, 5201, 10_000);
        let idle = idle_connections(&ns);
        let mut garbage = garbage_control(&ns);
        first_answer(&mut garbage);
        let client = ns.run_program("timeout", ["5", "iperf3", "-c", GUEST_IP, "-t", "2", "-J"]);
        drop((idle, garbage));
        client
    });
    assert_eq!(
        client.status, 0,
        "iperf3 -t 2 did not complete normally within 5 s (124: timed out)\n{client:?}\n{guest:?}"
    );
    guest.assert_status(0);
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&client))],
        "{guest:?}"
    );
}

#[test]
fn half_open_connections_time_out_after_the_handshake_limit() {
    let ns = NetNs::with_tap("synwait");
    let (guest, ()) = with_guest(&ns, 2, &["count=1", "net.handshake=1"], |lines| {
        syn_flood(&ns, 5201, SYN_QUEUE as u32);
        wait_for_line(
            lines,
            "half-open connection to port 5201 timed out after 1 s (2 so far)",
        );
        iperf3(&ns).assert_status(0);
    });
    guest.assert_status(0);
    let [dropped, timed_out, idle, refused] = lockout_counters(&guest);
    assert_eq!(
        (dropped, timed_out, idle, refused),
        (0, 2, 0, 0),
        "{guest:?}"
    );
}

#[test]
fn an_idle_connection_is_reset_by_the_stack_after_net_idle() {
    let ns = NetNs::with_tap("netidle");
    let (guest, (how, client)) = with_guest(&ns, 2, &["count=1", "net.idle=1"], |lines| {
        let mut idle = connect(&ns, 5001);
        let (how, got) = read_to_end(&mut idle);
        assert_eq!(got, b"", "the iperf2 server sends nothing");
        wait_for_line(lines, "net: reset a connection idle for 1 s (1 so far)");
        // The reset connection ended no test: the next client's is the first.
        (how, iperf2(&ns))
    });
    guest.assert_status(0);
    assert_eq!(how, Ended::Reset, "{guest:?}");
    let [_, _, idle, _] = lockout_counters(&guest);
    assert_eq!(idle, 1, "{guest:?}");
    assert_eq!(
        tests_reported(&guest),
        [("iperf2".to_string(), 1, iperf2_bytes(&client))],
        "{guest:?}"
    );
}

/// With the pool full of idle connections (`net.conns=2`), a new client is not
/// refused: the stack resets the connection idle longest (at least 1 s) to admit it,
/// once per connection the client opens (iperf3's control and data connections).
#[test]
fn a_full_pool_resets_its_longest_idle_connections_to_admit_a_client() {
    let ns = NetNs::with_tap("evict");
    let (guest, (client, ended)) = with_guest(&ns, 2, &["count=1", "net.conns=2"], |lines| {
        let mut idle = [connect(&ns, 5001), connect(&ns, 5001)];
        let client = iperf3(&ns);
        wait_for_line(lines, "reset one idle for 1 s to admit another (2 so far)");
        let ended: Vec<Ended> = idle.iter_mut().map(|s| read_to_end(s).0).collect();
        (client, ended)
    });
    guest.assert_status(0);
    assert_eq!(ended, [Ended::Reset, Ended::Reset], "{guest:?}");
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&client))],
        "{guest:?}"
    );
    let [_, _, idle, refused] = lockout_counters(&guest);
    assert_eq!((idle, refused), (2, 0), "{guest:?}");
}
