//! The guest sending: the `iperf` image's iperf3 server in reverse (`-R`: the server
//! sends) and bidirectional (`--bidir`) tests against the stock iperf3 client, with
//! one and four streams, in 1 and 2 compartments (the send path with TSO and checksum
//! offload when the stack shares the driver's compartment), and the hostile cases: a
//! client killed mid-reverse-test, parameters that are not JSON, a UDP test.
//!
//! Each test makes its own network namespace ([`NetNs`]); the guest is 10.0.0.2. What
//! is asserted is what a user of iperf3 reads: its exit status and its `-J` report,
//! and that the guest's own count of the bytes it sent matches the client's.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flexos_e2e::iperf::{iperf3_bytes, iperf3_received, tests_reported, with_guest};
use flexos_e2e::netns::{NetNs, GUEST_IP};
use flexos_e2e::{require_tool, wait_for_line, Outcome};

/// Only a guard against a hang: every read waits for an event.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The client's `-J` report.
fn report(client: &Outcome) -> serde_json::Value {
    client.assert_status(0);
    serde_json::from_str(&client.stdout)
        .unwrap_or_else(|e| panic!("iperf3's -J report: {e}\n{client:?}"))
}

/// Per stream of a report: (bytes the sender counted, bytes the receiver counted).
fn streams(json: &serde_json::Value) -> Vec<(u64, u64)> {
    json["end"]["streams"]
        .as_array()
        .expect("end.streams")
        .iter()
        .map(|s| {
            (
                s["sender"]["bytes"].as_u64().expect("sender.bytes"),
                s["receiver"]["bytes"].as_u64().expect("receiver.bytes"),
            )
        })
        .collect()
}

/// `iperf3 -R` with `streams` streams into a guest of `compartments`: the client
/// receives, every stream gets bytes, and the guest counted what the client's report
/// says the server sent.
fn reverse(compartments: u32, streams_wanted: &str) {
    let ns = NetNs::with_tap("rev");
    let (guest, client) = with_guest(&ns, compartments, &["count=1"], |_| {
        ns.run_program(
            "iperf3",
            ["-c", GUEST_IP, "-R", "-t", "2", "-J", "-P", streams_wanted],
        )
    });
    guest.assert_status(0);
    let json = report(&client);
    let per_stream = streams(&json);
    assert_eq!(per_stream.len().to_string(), streams_wanted, "{client:?}");
    for &(sent, received) in &per_stream {
        assert!(received > 0 && received <= sent, "{client:?}");
    }
    let sent = iperf3_bytes(&client, "sum_sent");
    assert!(iperf3_bytes(&client, "sum_received") > 0, "{client:?}");
    let n: u64 = streams_wanted.parse().unwrap();
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), n, sent)],
        "{guest:?}"
    );
}

#[test]
fn iperf3_reverse_in_one_compartment() {
    reverse(1, "1");
}

#[test]
fn iperf3_reverse_in_two_compartments() {
    reverse(2, "1");
}

#[test]
fn iperf3_reverse_with_four_streams_in_two_compartments() {
    reverse(2, "4");
}

#[test]
fn iperf3_reverse_with_four_streams_in_one_compartment() {
    reverse(1, "4");
}

#[test]
fn iperf3_reverse_ends_after_the_bytes_asked_for() {
    // -n with -R: the client counts what it received and ends the test there.
    let ns = NetNs::with_tap("revn");
    let (guest, client) = with_guest(&ns, 2, &["count=1"], |_| {
        ns.run_program("iperf3", ["-c", GUEST_IP, "-R", "-n", "64M", "-J"])
    });
    guest.assert_status(0);
    assert!(
        iperf3_bytes(&client, "sum_received") >= 64 << 20,
        "{client:?}"
    );
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_bytes(&client, "sum_sent"))],
        "{guest:?}"
    );
}

#[test]
fn iperf3_bidirectional_moves_bytes_both_ways() {
    for compartments in [1, 2] {
        let ns = NetNs::with_tap("bidir");
        let (guest, client) = with_guest(&ns, compartments, &["count=1"], |_| {
            ns.run_program("iperf3", ["-c", GUEST_IP, "--bidir", "-t", "2", "-J"])
        });
        guest.assert_status(0);
        let json = report(&client);
        let end = &json["end"];
        let bytes = |key: &str| end[key]["bytes"].as_u64().unwrap_or(0);
        // Client to guest, as the guest counted it; guest to client, as the client did.
        let (up, down) = (bytes("sum_received"), bytes("sum_received_bidir_reverse"));
        assert!(
            up > 0 && down > 0,
            "{compartments} compartments\n{client:?}"
        );
        assert_eq!(
            tests_reported(&guest),
            [(
                "iperf3".to_string(),
                2,
                up + bytes("sum_sent_bidir_reverse")
            )],
            "{compartments} compartments\n{guest:?}"
        );
    }
}

#[test]
fn a_client_killed_mid_reverse_test_ends_it_and_the_server_goes_on() {
    require_tool("timeout", "coreutils");
    let ns = NetNs::with_tap("rkill");
    let (guest, after) = with_guest(&ns, 2, &["count=1"], |lines| {
        // SIGKILL after 1 s of a 60 s reverse test: the guest is mid-send.
        let killed = ns.run_program(
            "timeout",
            [
                "--foreground",
                "-s",
                "KILL",
                "1",
                "iperf3",
                "-c",
                GUEST_IP,
                "-R",
                "-t",
                "60",
            ],
        );
        assert_eq!(killed.status, 137, "{killed:?}");
        // The kernel resets the dead client's connections; the guest ends the test.
        wait_for_line(lines, "iperf: iperf3 client ended the test early");
        ns.run_program("iperf3", ["-c", GUEST_IP, "-n", "16M", "-J"])
    });
    guest.assert_status(0);
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&after))],
        "{guest:?}"
    );
}

/// A control connection that sends a cookie and then `params` as the test's
/// parameters; returns every byte the guest answered before it ended the connection,
/// and whether it ended it with a FIN.
fn control_with(ns: &NetNs, params: &[u8]) -> (Vec<u8>, bool) {
    let mut s = ns
        .enter(|| TcpStream::connect((GUEST_IP, 5201)))
        .expect("connect to the guest's iperf3 port");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"abcdefghijklmnopqrstuvwxyz234567abcd\0")
        .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first)
        .expect("PARAM_EXCHANGE from the guest");
    s.write_all(&(params.len() as u32).to_be_bytes()).unwrap();
    s.write_all(params).unwrap();
    let mut got = first.to_vec();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, false),
            Err(e) => panic!("the guest did not end the connection: {e}; it sent {got:?}"),
        }
    }
}

#[test]
fn parameters_that_are_not_json_end_the_test_and_the_next_client_is_served() {
    let ns = NetNs::with_tap("badjs");
    let (guest, (answers, client)) = with_guest(&ns, 2, &["count=1"], |_| {
        let answers = [
            control_with(&ns, b"{\"reverse\":true,\"parallel\":"),
            control_with(&ns, b"not json at all"),
            // A write larger than iperf3 allows.
            control_with(&ns, b"{\"reverse\":true,\"len\":99999999}"),
        ];
        (
            answers,
            ns.run_program("iperf3", ["-c", GUEST_IP, "-R", "-n", "8M", "-J"]),
        )
    });
    guest.assert_status(0);
    for answer in &answers {
        // PARAM_EXCHANGE (9), SERVER_TERMINATE (11), then a clean end.
        assert_eq!(*answer, (vec![9, 11], true), "{guest:?}");
    }
    assert_eq!(
        guest
            .stdout
            .matches("iperf: iperf3 test refused: bad parameters")
            .count(),
        3,
        "{guest:?}"
    );
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_bytes(&client, "sum_sent"))],
        "{guest:?}"
    );
}

#[test]
fn iperf3_udp_datagrams_are_counted_with_losses_and_jitter() {
    let ns = NetNs::with_tap("udp");
    let (guest, client) = with_guest(&ns, 2, &["count=1"], |_| {
        ns.run_program(
            "iperf3",
            [
                "-c", GUEST_IP, "-u", "-b", "50M", "-t", "2", "-P", "2", "-J",
            ],
        )
    });
    guest.assert_status(0);
    let json = report(&client);
    let sum = &json["end"]["sum"];
    let packets = sum["packets"].as_u64().expect("end.sum.packets");
    let lost = sum["lost_packets"].as_u64().expect("end.sum.lost_packets");
    // The server's count, as the client shows it: datagrams came, no more were lost
    // than were sent, and the jitter is a number.
    assert!(packets > 0 && lost <= packets, "{client:?}");
    assert!(sum["jitter_ms"].as_f64().is_some(), "{client:?}");
    let reported = tests_reported(&guest);
    assert_eq!(reported.len(), 1, "{guest:?}");
    assert_eq!(
        (reported[0].0.as_str(), reported[0].1),
        ("iperf3-udp", 2),
        "{guest:?}"
    );
    assert!(reported[0].2 > 0, "{guest:?}");
}

#[test]
fn iperf3_udp_with_the_server_sending_is_refused_and_the_next_client_is_served() {
    let ns = NetNs::with_tap("udpr");
    let (guest, (refused, after)) = with_guest(&ns, 2, &["count=1"], |_| {
        let refused = ns.run_program("iperf3", ["-c", GUEST_IP, "-u", "-R", "-t", "1"]);
        (
            refused,
            ns.run_program("iperf3", ["-c", GUEST_IP, "-n", "8M", "-J"]),
        )
    });
    guest.assert_status(0);
    assert_ne!(refused.status, 0, "{refused:?}");
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("the server has terminated"),
        "{refused:?}"
    );
    assert_eq!(
        tests_reported(&guest),
        [("iperf3".to_string(), 1, iperf3_received(&after))],
        "{guest:?}"
    );
}

/// The CSV lines of an iperf2 client (`-y C`): (source address, bytes).
fn iperf2_lines(client: &Outcome) -> Vec<(String, u64)> {
    client.assert_status(0);
    client
        .stdout
        .lines()
        .filter(|l| l.split(',').count() >= 9)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[7].parse().unwrap())
        })
        .collect()
}

/// The bytes the guest says it sent back to a dual-test client.
fn sent_back(guest: &Outcome) -> Vec<u64> {
    guest
        .stdout
        .lines()
        .filter_map(|l| l.split_once("iperf: iperf2 stream back 0: "))
        .map(|(_, rest)| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn iperf2_dual_test_gets_its_reverse_connection() {
    for compartments in [1, 2] {
        let ns = NetNs::with_tap("dual");
        let (guest, client) = with_guest(&ns, compartments, &["count=1"], |_| {
            ns.run_program("iperf", ["-c", GUEST_IP, "-d", "-t", "1", "-y", "C"])
        });
        guest.assert_status(0);
        let lines = iperf2_lines(&client);
        // One report per direction: the client's stream, and the one the guest
        // opened back to it (its source is the guest).
        let to_guest: Vec<u64> = lines
            .iter()
            .filter(|l| l.0 == "10.0.0.1")
            .map(|l| l.1)
            .collect();
        let back: Vec<u64> = lines
            .iter()
            .filter(|l| l.0 == GUEST_IP)
            .map(|l| l.1)
            .collect();
        assert_eq!(
            (to_guest.len(), back.len()),
            (1, 1),
            "{compartments}\n{client:?}"
        );
        assert!(back[0] > 0, "{client:?}");
        assert_eq!(
            tests_reported(&guest),
            [("iperf2".to_string(), 1, to_guest[0])],
            "{compartments}\n{guest:?}"
        );
        assert_eq!(sent_back(&guest).len(), 1, "{guest:?}");
        assert!(sent_back(&guest)[0] >= back[0], "{guest:?}\n{client:?}");
    }
}

#[test]
fn iperf2_tradeoff_test_gets_the_bytes_asked_for_back() {
    // -r -n: after its own 16 MiB the client waits for exactly 16 MiB back.
    let ns = NetNs::with_tap("trade");
    let (guest, client) = with_guest(&ns, 2, &["count=1"], |_| {
        ns.run_program("iperf", ["-c", GUEST_IP, "-r", "-n", "16M", "-y", "C"])
    });
    guest.assert_status(0);
    let lines = iperf2_lines(&client);
    assert_eq!(lines.len(), 2, "{client:?}");
    assert!(lines.iter().all(|l| l.1 == 16 << 20), "{client:?}");
    assert_eq!(sent_back(&guest), [16 << 20], "{guest:?}");
}
