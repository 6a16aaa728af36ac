//! Network namespaces for the network tests: each test makes its own, with a tap for
//! the guest's device and the client's address, and removes it on drop. Every address
//! a test uses lives inside one; nothing is routed to or from the host's namespace.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Sender;

use crate::{monitor_command_in, require_tool, run_with_timeout, Outcome, TIMEOUT};

/// The tap's name inside every test namespace (names are per namespace).
pub const TAP: &str = "fxtap0";
/// The client side's address on the tap.
pub const CLIENT_IP: &str = "10.0.0.1";
/// The guest's address (`ip=` guest argument).
pub const GUEST_IP: &str = "10.0.0.2";

/// A namespace holding [`TAP`] (with a vnet header) at [`CLIENT_IP`]/24; deleted, with
/// its tap, on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a uniquely named namespace for the calling test. Fails the test, naming
    /// what to install or which right is missing, if it cannot.
    #[track_caller]
    pub fn with_tap(tag: &str) -> NetNs {
        require_tool("ip", "iproute2");
        assert!(
            std::path::Path::new("/dev/net/tun").exists(),
            "/dev/net/tun does not exist: load the tun module (modprobe tun)"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("fxt{}-{n}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        // From here on, drop removes whatever was made if a later step fails.
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap", "vnet_hdr"]);
        ns.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", TAP]);
        ns.ip(&["link", "set", TAP, "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS...`, which must succeed.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command running `program` inside the namespace.
    pub fn command<I, S>(&self, program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `program` (a stock client) inside the namespace with the usual timeout.
    #[track_caller]
    pub fn run_program<I, S>(&self, program: &str, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.command(program, args);
        let command = format!("ip netns exec {} {program} ...", self.name);
        run_with_timeout(cmd, command, TIMEOUT, None)
    }

    /// Runs the monitor inside the namespace like [`crate::run_watching`]: every line
    /// it prints also goes to `lines`.
    #[track_caller]
    pub fn run_monitor_watching<I, S>(&self, args: I, lines: Sender<String>) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, command) = monitor_command_in(Some(&self.name), args);
        run_with_timeout(cmd, command, TIMEOUT, Some(lines))
    }

    /// Runs the monitor inside the namespace and waits for it, like [`crate::run`].
    #[track_caller]
    pub fn run_monitor<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, command) = monitor_command_in(Some(&self.name), args);
        run_with_timeout(cmd, command, TIMEOUT, None)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys the tap in it.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {} (network tests need root or CAP_NET_ADMIN)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
