//! Running the `redis` image (unmodified Redis 7 on the POSIX layer) against the stock
//! Redis tools: boot it in a [`NetNs`], wait until Redis is ready, run clients, then
//! end it with `SHUTDOWN` and read what the monitor printed.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use crate::netns::{NetNs, GUEST_IP, TAP};
use crate::{image, require_tool, wait_for_line, Outcome};

/// The line Redis logs once it listens.
pub const READY: &str = "Ready to accept connections";
/// Private memory per compartment for Redis runs (MiB): Redis, its clients' buffers
/// and the stack's sockets.
pub const MEM_MIB: &str = "256";

/// Boots redis.elf in `ns` with `compartments` (and `disk`, if given), guest `args`
/// after `ip=`, waits until Redis is ready, runs `clients`, then waits for the monitor
/// to exit (`clients` ends the server, e.g. with [`shutdown`]).
pub fn with_redis<T: Send>(
    ns: &NetNs,
    compartments: u32,
    disk: Option<&Path>,
    args: &[&str],
    clients: impl FnOnce(&mpsc::Receiver<String>) -> T + Send,
) -> (Outcome, T) {
    require_tool("redis-cli", "redis-tools");
    let mut argv = vec![
        "-m".to_string(),
        MEM_MIB.into(),
        "--compartments".into(),
        compartments.to_string(),
        "--net".into(),
        format!("tap={TAP}"),
    ];
    if let Some(d) = disk {
        argv.push("--disk".into());
        argv.push(d.display().to_string());
    }
    argv.push(image("redis").display().to_string());
    argv.push("--".into());
    argv.push(format!("ip={GUEST_IP}/24"));
    argv.extend(args.iter().map(|a| a.to_string()));
    let (tx, lines) = mpsc::channel();
    thread::scope(|scope| {
        let guest = scope.spawn(move || ns.run_monitor_watching(argv, tx));
        wait_for_line(&lines, READY);
        let result = clients(&lines);
        (guest.join().expect("the monitor thread panicked"), result)
    })
}

/// `redis-cli -h GUEST ARGS...` (stdout as Redis printed it, `--raw` off unless given).
#[track_caller]
pub fn cli(ns: &NetNs, args: &[&str]) -> Outcome {
    let mut all = vec!["-h", GUEST_IP];
    all.extend_from_slice(args);
    ns.run_program("redis-cli", all)
}

/// The reply lines of `redis-cli ARGS...`, which must exit 0.
#[track_caller]
pub fn reply(ns: &NetNs, args: &[&str]) -> Vec<String> {
    let out = cli(ns, args);
    out.assert_status(0);
    out.stdout.lines().map(str::to_string).collect()
}

/// Ends the server (`SHUTDOWN NOSAVE`, or `SHUTDOWN SAVE` with `save`); the monitor
/// then exits 0.
pub fn shutdown(ns: &NetNs, save: bool) {
    // The connection closes without a reply when the server exits: redis-cli's own
    // status says nothing about the server's, which the monitor's exit status does.
    let _ = cli(ns, &["SHUTDOWN", if save { "SAVE" } else { "NOSAVE" }]);
}
