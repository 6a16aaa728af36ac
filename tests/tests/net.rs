//! The network end to end: the `iperf` image's servers against the stock `iperf` and
//! `iperf3` clients, ping, two clients at once, a client killed mid-stream, and garbage
//! frames on the wire during a transfer, in 1, 2 and 3 compartments.
//!
//! Each test makes its own network namespace ([`NetNs`]) with a tap at 10.0.0.1 and runs
//! the monitor and the clients inside it; the guest is 10.0.0.2 (see
//! [`flexos_e2e::iperf`] for how the guest is run and what it reports).

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::thread;

use flexos_e2e::iperf::{iperf2_bytes, iperf3_bytes, iperf3_received, tests_reported, with_guest};
use flexos_e2e::netns::{NetNs, GUEST_IP, TAP};
use flexos_e2e::{require_tool, wait_for_line};

fn iperf2_bytes_match(compartments: u32) {
    let ns = NetNs::with_tap("i2");
    let (guest, client) = with_guest(&ns, compartments, &["count=1"], |_| {
        ns.run_program("iperf", ["-c", GUEST_IP, "-n", "64M", "-y", "C"])
    });
    guest.assert_status(0);
    let sent = iperf2_bytes(&client);
    assert!(sent >= 64 << 20, "{client:?}");
    assert_eq!(
        tests_reported(&guest),
        [("iperf2".to_string(), 1, sent)],
        "{guest:?}"
    );
    assert!(
        guest.stdout.contains("iperf: iperf2 stream 0: "),
        "{guest:?}"
    );
}

#[test]
fn iperf2_client_and_one_compartment_agree_on_the_bytes() {
    iperf2_bytes_match(1);
}

#[test]
fn iperf2_client_and_two_compartments_agree_on_the_bytes() {
    iperf2_bytes_match(2);
}

fn iperf3_bytes_match(compartments: u32, parallel: &str) {
    let ns = NetNs::with_tap("i3");
    let (guest, client) = with_guest(&ns, compartments, &["count=1"], |_| {
        ns.run_program(
            "iperf3",
            ["-c", GUEST_IP, "-n", "64M", "-J", "-P", parallel],
        )
    });
    guest.assert_status(0);
    assert!(iperf3_bytes(&client, "sum_sent") >= 64 << 20, "{client:?}");
    let streams: u64 = parallel.parse().unwrap();
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), streams, iperf3_received(&client))],
        "{guest:?}"
    );
}

#[test]
fn iperf3_client_and_one_compartment_agree_on_the_bytes() {
    iperf3_bytes_match(1, "1");
}

#[test]
fn iperf3_with_two_parallel_streams_in_two_compartments() {
    iperf3_bytes_match(2, "2");
}

/// `iperf3 -P 4 -J`: each stream's figures from the client's report, (id, bytes the
/// client sent, bytes the server says it received).
fn per_stream(client: &flexos_e2e::Outcome) -> Vec<(u64, u64, u64)> {
    client.assert_status(0);
    let json: serde_json::Value = serde_json::from_str(&client.stdout)
        .unwrap_or_else(|e| panic!("iperf3's -J report: {e}\n{client:?}"));
    json["end"]["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("no end.streams\n{client:?}"))
        .iter()
        .map(|s| {
            let n = |side: &str, key: &str| {
                s[side][key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{side}.{key} in {s}"))
            };
            (
                n("sender", "socket"),
                n("sender", "bytes"),
                n("receiver", "bytes"),
            )
        })
        .collect()
}

/// Parallel streams share the stack's heap: each gets a ring of the same size (the
/// stack moves the rings as streams arrive), and the server's per-stream results
/// reach the client's streams in the order it opened them.
fn four_streams_share_fairly(compartments: u32) {
    let ns = NetNs::with_tap("p4");
    let (guest, client) = with_guest(&ns, compartments, &["count=1"], |_| {
        ns.run_program("iperf3", ["-c", GUEST_IP, "-t", "2", "-J", "-P", "4"])
    });
    guest.assert_status(0);
    let streams = per_stream(&client);
    assert_eq!(streams.len(), 4, "{client:?}");
    for &(id, sent, received) in &streams {
        // What a user reads in the report: every stream moved bytes, and no stream
        // received more than it sent (the results of another one).
        assert!(received > 0 && received <= sent, "stream {id}\n{client:?}");
    }
    let rings: Vec<&str> = guest
        .stdout
        .lines()
        .filter(|l| l.contains("iperf: iperf3 stream "))
        .filter_map(|l| l.rsplit_once("(ring ").map(|(_, r)| r))
        .collect();
    assert_eq!(rings.len(), 4, "{guest:?}");
    assert!(
        rings.iter().all(|r| *r == rings[0]),
        "unequal rings: {rings:?}\n{guest:?}"
    );
    let total: u64 = streams.iter().map(|s| s.2).sum();
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 4, total)],
        "{guest:?}"
    );
}

#[test]
fn four_parallel_streams_get_equal_rings_in_one_compartment() {
    four_streams_share_fairly(1);
}

#[test]
fn four_parallel_streams_get_equal_rings_in_two_compartments() {
    four_streams_share_fairly(2);
}

#[test]
fn the_guest_answers_ping_in_both_splits() {
    require_tool("ping", "iputils-ping");
    for compartments in [1, 2] {
        let ns = NetNs::with_tap("ping");
        let (guest, ping) = with_guest(&ns, compartments, &["count=1"], |_| {
            let ping = ns.run_program("ping", ["-c", "3", "-W", "5", GUEST_IP]);
            // Ends the guest's run: one short test.
            ns.run_program("iperf", ["-c", GUEST_IP, "-n", "1M", "-y", "C"])
                .assert_status(0);
            ping
        });
        guest.assert_status(0);
        ping.assert_status(0);
        assert!(
            ping.stdout.contains("3 packets transmitted, 3 received"),
            "{compartments} compartments\n{ping:?}"
        );
    }
}

#[test]
fn two_clients_at_once_each_get_their_bytes_counted() {
    let ns = NetNs::with_tap("two");
    let (guest, (two, three)) = with_guest(&ns, 2, &["count=2"], |_| {
        thread::scope(|s| {
            let two = s.spawn(|| ns.run_program("iperf", ["-c", GUEST_IP, "-n", "32M", "-y", "C"]));
            let three = s.spawn(|| ns.run_program("iperf3", ["-c", GUEST_IP, "-n", "32M", "-J"]));
            (two.join().unwrap(), three.join().unwrap())
        })
    });
    guest.assert_status(0);
    let mut reported = tests_reported(&guest);
    reported.sort();
    assert_eq!(
        reported,
        [
            ("iperf2".to_string(), 1, iperf2_bytes(&two)),
            ("iperf3".to_string(), 1, iperf3_received(&three)),
        ],
        "{guest:?}"
    );
}

#[test]
fn a_client_killed_mid_stream_ends_its_test_and_the_server_goes_on() {
    require_tool("timeout", "coreutils");
    let ns = NetNs::with_tap("kill");
    let (guest, after) = with_guest(&ns, 2, &["count=2"], |lines| {
        // SIGKILL after 1 s of a 60 s stream: always mid-stream. (--foreground:
        // timeout signals only the client, not its own process group.)
        let killed = ns.run_program(
            "timeout",
            [
                "--foreground",
                "-s",
                "KILL",
                "1",
                "iperf",
                "-c",
                GUEST_IP,
                "-t",
                "60",
            ],
        );
        assert_eq!(killed.status, 137, "{killed:?}");
        // The killed socket's queued data and FIN are still on their way: a client
        // connecting before they arrive would join the same iperf2 test.
        wait_for_line(lines, "{\"bench\":\"iperf\"");
        ns.run_program("iperf", ["-c", GUEST_IP, "-n", "16M", "-y", "C"])
    });
    guest.assert_status(0);
    let tests = tests_reported(&guest);
    assert_eq!(tests.len(), 2, "{guest:?}");
    assert!(tests[0].2 > 0, "the killed client's bytes\n{guest:?}");
    assert_eq!(
        tests[1],
        ("iperf2".to_string(), 1, iperf2_bytes(&after)),
        "{guest:?}"
    );
}

/// Sends malformed frames out of the namespace's tap (so into the guest's device) from
/// an AF_PACKET socket until its stdin closes (`sending` after the first), then prints
/// how many it sent: truncated
/// Ethernet, IPv4 with bad lengths, versions and checksums, TCP to the iperf port with
/// random flags, random bytes, and runt frames, about 10k a second.
const GARBAGE: &str = r#"
import os, random, select, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
mine = open(f"/sys/class/net/{sys.argv[1]}/address").read().strip()
src = bytes.fromhex(mine.replace(":", ""))
rng = random.Random(7)
dst = bytes.fromhex("525400123456")
sent = 0
def frame():
    kind = rng.randrange(6)
    eth = dst + src + b"\x08\x00"
    if kind == 0:
        return dst + src[:rng.randrange(1, 6)]
    if kind == 1:
        return eth + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
    if kind == 2:
        ihl_ver = rng.choice([0x45, 0x46, 0x4f, 0x65, 0x40])
        total = rng.choice([0, 19, 20, 40, 1500, 65535])
        ip = struct.pack("!BBHHHBBH4s4s", ihl_ver, 0, total, 1, 0, 64, 6, rng.randrange(65536),
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        return eth + ip + os.urandom(rng.randrange(0, 60))
    if kind == 3:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        tcp = struct.pack("!HHIIBBHHH", rng.randrange(65536), 5001, rng.randrange(1 << 32),
                          rng.randrange(1 << 32), rng.choice([0x50, 0xf0, 0x10]), rng.randrange(256),
                          rng.randrange(65536), rng.randrange(65536), 0)
        return eth + ip + tcp
    if kind == 4:
        return os.urandom(rng.randrange(14, 1514))
    return eth + os.urandom(rng.randrange(0, 1500))
refused = 0
while sent == 0 or not select.select([sys.stdin], [], [], 0)[0]:
    try:
        s.send(frame())
        sent += 1
        if sent == 1:
            print("sending", flush=True)
    except OSError:
        refused += 1  # the kernel refuses some runts itself (EINVAL)
    # ~10k frames a second: garbage among the transfer's frames, not a flood that fills
    # the tap's queue (the kernel would then drop the client's own frames, ARP included,
    # before they reach the device).
    time.sleep(0.0001)
print(f"garbage frames sent: {sent}")
"#;

#[test]
fn garbage_frames_during_a_transfer_are_dropped_and_the_transfer_completes() {
    garbage_during_a_transfer(2);
}

#[test]
fn garbage_frames_cross_the_relay_rings_of_three_compartments_harmlessly() {
    // netdev in its own compartment: every frame, garbage included, crosses to net
    // through the relay rings.
    garbage_during_a_transfer(3);
}

/// Garbage frames sent through the tap while a stock client streams 64 MiB into the
/// guest in `compartments` compartments: the transfer completes and the guest's count
/// is the client's.
fn garbage_during_a_transfer(compartments: u32) {
    require_tool("python3", "python3");
    let ns = NetNs::with_tap("junk");
    let (guest, (client, junk)) = with_guest(&ns, compartments, &["count=1"], |_| {
        let mut junk = ns.command("python3", ["-c", GARBAGE, TAP]);
        let mut junk = junk.stdin(Stdio::piped()).spawn().expect("start python3");
        let mut out = BufReader::new(junk.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).expect("read python3's output");
        assert_eq!(first, "sending\n", "the garbage sender did not start");
        let client = ns.run_program("iperf", ["-c", GUEST_IP, "-n", "64M", "-y", "C"]);
        // Closing stdin stops the sender: it ran for the whole transfer.
        drop(junk.stdin.take());
        let mut report = String::new();
        out.read_to_string(&mut report)
            .expect("read python3's output");
        assert!(junk.wait().expect("wait for python3").success(), "{report}");
        (client, report)
    });
    guest.assert_status(0);
    let sent: u64 = junk
        .trim()
        .strip_prefix("garbage frames sent: ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{junk}"));
    assert!(sent > 0, "{junk}");
    assert_eq!(
        tests_reported(&guest),
        [("iperf2".to_string(), 1, iperf2_bytes(&client))],
        "{guest:?}"
    );
}

#[test]
fn iperf2_client_and_three_compartments_agree_on_the_bytes() {
    iperf2_bytes_match(3);
}
