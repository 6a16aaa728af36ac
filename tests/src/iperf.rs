//! Running the `iperf` image against stock clients, for the network tests (`net`,
//! `net_lockout`): boot it in a [`NetNs`], wait until it listens, run clients, and read
//! what both sides report.
//!
//! The guest prints `iperf: listening ...` when its sockets are open and, after each
//! test, one JSON line with the bytes it received, which must equal what the client
//! says it sent. `count=N` makes the guest exit 0 after N tests.

use std::sync::mpsc;
use std::thread;

use crate::netns::{NetNs, GUEST_IP, TAP};
use crate::{image, require_tool, wait_for_line, Outcome};

/// The line the guest prints once both servers listen.
pub const LISTENING: &str = "iperf: listening on 10.0.0.2 ports 5001 (iperf2) 5201 (iperf3)";

/// The guest's JSON line for each test, parsed just enough: (proto, streams, bytes).
pub fn tests_reported(out: &Outcome) -> Vec<(String, u64, u64)> {
    out.stdout
        .lines()
        // In several compartments the console prefixes each line with `[app] `.
        .filter_map(|l| l.find("{\"bench\":\"iperf\"").map(|at| &l[at..]))
        .map(|l| {
            let field = |name: &str| -> String {
                let key = format!("\"{name}\":");
                let start = l.find(&key).unwrap_or_else(|| panic!("{name} in {l}")) + key.len();
                l[start..]
                    .split([',', '}'])
                    .next()
                    .unwrap()
                    .trim_matches('"')
                    .to_string()
            };
            (
                field("proto"),
                field("streams").parse().unwrap(),
                field("bytes").parse().unwrap(),
            )
        })
        .collect()
}

/// Boots the iperf image in `ns` with `compartments` and guest `args`, waits until it
/// listens, runs `clients` (which talk to it, and may wait for more of its lines),
/// then waits for the monitor to exit.
pub fn with_guest<T: Send>(
    ns: &NetNs,
    compartments: u32,
    args: &[&str],
    clients: impl FnOnce(&mpsc::Receiver<String>) -> T + Send,
) -> (Outcome, T) {
    require_tool("iperf", "iperf");
    require_tool("iperf3", "iperf3");
    let mut argv = vec![
        "--compartments".to_string(),
        compartments.to_string(),
        "--net".into(),
        format!("tap={TAP}"),
        image("iperf").display().to_string(),
        "--".into(),
        format!("ip={GUEST_IP}/24"),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let (tx, lines) = mpsc::channel();
    thread::scope(|scope| {
        let guest = scope.spawn(move || ns.run_monitor_watching(argv, tx));
        wait_for_line(&lines, LISTENING);
        let result = clients(&lines);
        (guest.join().expect("the monitor thread panicked"), result)
    })
}

/// Bytes an iperf2 client reports in its CSV line (`-y C`): field 8.
pub fn iperf2_bytes(out: &Outcome) -> u64 {
    out.assert_status(0);
    let row = out
        .stdout
        .lines()
        .rfind(|l| l.split(',').count() >= 9)
        .unwrap_or_else(|| panic!("no CSV report from iperf\n{out:?}"));
    row.split(',').nth(7).unwrap().parse().unwrap()
}

/// `end.<sum>.bytes` from an iperf3 client's `-J` report, `sum` being `sum_sent` (what
/// the client wrote) or `sum_received` (what the server said it read, in the results
/// it sent back); read without a JSON parser by locating the keys.
pub fn iperf3_bytes(out: &Outcome, sum: &str) -> u64 {
    out.assert_status(0);
    let json = &out.stdout;
    let at = json
        .rfind(&format!("\"{sum}\""))
        .unwrap_or_else(|| panic!("no {sum} in iperf3's report\n{out:?}"));
    let key = "\"bytes\":";
    let start = json[at..].find(key).unwrap() + at + key.len();
    json[start..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What the guest received in an iperf3 test, as the client reports it: the server's
/// count (as real iperf3 servers do, the guest stops counting at the client's
/// TEST_END, so bytes still in flight then are sent but not counted).
pub fn iperf3_received(out: &Outcome) -> u64 {
    let (sent, received) = (
        iperf3_bytes(out, "sum_sent"),
        iperf3_bytes(out, "sum_received"),
    );
    assert!(received <= sent && received > 0, "{out:?}");
    received
}
