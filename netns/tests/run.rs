//! `flexos-netns` end to end (needs root, `ip` and /dev/net/tun): the command runs
//! inside the namespace with the tap, its exit status passes through, and the namespace
//! is gone afterwards, also when the launcher is stopped by SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use flexos_netns::{exists, unique_name, NetNs};

fn netns() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flexos-netns"))
}

#[test]
fn run_passes_the_exit_status_through_and_removes_the_namespace() {
    let name = unique_name("status");
    let out = netns()
        .args(["run", "--ns", &name, "--tap", "fxr0", "--"])
        .args([
            "sh",
            "-c",
            "ip -o addr show dev fxr0; echo $FLEXOS_NETNS; exit 7",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // The command saw the tap and its address: it ran inside the namespace.
    assert!(stdout.contains("inet 10.0.0.1/24"), "{stdout}");
    assert!(stdout.contains(&name), "{stdout}");
    assert!(!exists(&name), "{name} is still there");
}

#[test]
fn sigterm_reaches_the_command_and_the_namespace_goes() {
    let name = unique_name("term");
    let mut child = netns()
        .args(["run", "--ns", &name, "--"])
        .args(["sh", "-c", "echo ready; exec sleep 600"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    assert!(exists(&name), "{name} should exist while the command runs");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill takes plain integers; `pid` is our child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    // sleep was ended by the SIGTERM passed on to it: 128 + 15.
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(!exists(&name), "{name} is still there");
}

#[test]
fn a_missing_command_is_127_and_leaves_nothing() {
    let name = unique_name("nocmd");
    let out = netns()
        .args(["run", "--ns", &name, "--", "/nonexistent/flexos-cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(!exists(&name));
}

#[test]
fn up_and_down_make_and_remove_a_named_namespace() {
    let name = unique_name("updown");
    let up = netns().args(["up", "--ns", &name]).output().unwrap();
    assert!(up.status.success(), "{up:?}");
    assert!(exists(&name));
    // Twice is an error that says how to remove it.
    let again = netns().args(["up", "--ns", &name]).output().unwrap();
    assert_eq!(again.status.code(), Some(71));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let down = netns().args(["down", "--ns", &name]).output().unwrap();
    assert!(down.status.success(), "{down:?}");
    assert!(!exists(&name));
    let gone = netns().args(["down", "--ns", &name]).output().unwrap();
    assert_eq!(gone.status.code(), Some(71));
    assert_eq!(
        String::from_utf8_lossy(&gone.stderr),
        format!("flexos-netns: error: no network namespace {name}\n")
    );
}

#[test]
fn bad_names_are_usage_errors() {
    let out = netns().args(["up", "--ns", "a/b"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = netns()
        .args(["run", "--tap", "much-too-long-name", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn library_namespaces_hold_a_tap_a_veth_and_go_on_drop() {
    let a = NetNs::with_tap("lib", "fxl0", "10.0.0.1/24").unwrap();
    let b = NetNs::unique("libpeer").unwrap();
    a.add_veth("fxv0", "10.0.1.1/24", &b, "fxv1", "10.0.1.2/24")
        .unwrap();
    let out = a
        .command("ping")
        .unwrap()
        .args(["-c", "1", "-W", "5", "10.0.1.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(a.link_counter("fxv0", "tx_dropped").unwrap(), 0);
    // The command sees the namespace's sysfs, as under `ip netns exec`.
    let out = a
        .command("cat")
        .unwrap()
        .arg("/sys/class/net/fxl0/tun_flags")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let names = (a.name().to_string(), b.name().to_string());
    // A thread inside sees the namespace's devices, not the host's.
    let here = a
        .enter(|| std::net::UdpSocket::bind("10.0.0.1:0").is_ok())
        .unwrap();
    assert!(here);
    drop(a);
    drop(b);
    assert!(!exists(&names.0) && !exists(&names.1));
}
