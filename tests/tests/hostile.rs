//! A guest (or its environment) working against the monitor: console output meant to
//! exhaust memory or drive the terminal, signals, and a stderr nobody reads.

use std::path::Path;
use std::process::{Command, Stdio};

use flexos_e2e::{
    hello, image, require_kvm, vmm_path, Background, TempDir, EXIT_CRASH, HELLO_LINE,
};

/// Guest bytes on one console line before it is broken (vmm/src/console.rs).
const LINE_MAX: usize = 4096;
/// How a broken line ends.
const CONTINUES: &str = "[+]";

#[test]
fn a_line_without_end_is_broken_and_the_report_stays_small() {
    // 64 MiB of 'A' without a newline, then `hello: crashing with ud` and #UD.
    let out = hello(["print=flood", "crash=ud"]);
    out.assert_status(EXIT_CRASH);
    let flood = 64 << 20;
    let lines: Vec<&str> = out.stdout.lines().collect();
    let full = format!("{}{CONTINUES}", "A".repeat(LINE_MAX));
    assert_eq!(lines.len(), 2 + flood / LINE_MAX + 1, "{}", out.stderr);
    assert_eq!(lines[..2], [HELLO_LINE, "args: print=flood crash=ud"]);
    // Every byte arrives, in lines of LINE_MAX; the one after the last 'A' breaks too.
    assert!(lines[2..2 + flood / LINE_MAX].iter().all(|l| *l == full));
    assert_eq!(lines.last(), Some(&"hello: crashing with ud"));
    // The report repeats the console's last lines, each cut short.
    assert!(
        out.stderr.len() < 8 << 10,
        "report of {} bytes:\n{}",
        out.stderr.len(),
        &out.stderr[..out.stderr.len().min(4000)]
    );
    assert!(out
        .stderr
        .starts_with("flexos-vmm: compartment 0 (app) crashed: invalid opcode (#UD)"));
    let cut = format!("    | {}…\n", "A".repeat(200));
    assert_eq!(out.stderr.matches(&cut).count(), 9, "{}", out.stderr);
    assert!(out.stderr.ends_with("    | hello: crashing with ud\n"));
}

#[test]
fn a_line_without_end_does_not_grow_the_monitor() {
    // The monitor's peak memory after a 64 MiB line, read while the guest spins.
    let hello = image("hello");
    let run = Background::start(
        &[hello.to_str().unwrap(), "--", "print=flood", "spin=forever"],
        false,
    );
    run.wait_for("hello: spinning");
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.pid()))
        .expect("cannot read the monitor's /proc status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    let (code, _, _) = run.signal("TERM");
    assert_eq!(code, 143);
    // A few MiB of its own and the guest's touched pages; the line would be 64 MiB.
    assert!(peak_kib < 32 << 10, "peak RSS {peak_kib} KiB");
}

#[test]
fn control_characters_are_escaped_in_console_panic_and_report() {
    let out = hello(["print=escapes"]);
    out.assert_status(EXIT_CRASH);
    let console = [
        r"esc:\x1b[31mred\x1b[0m cr:\x0d nul:\x00 del:\x7f csi:\u{9b}2J bidi:\u{202e}olleh",
        r"invalid:\xff\xfe\xc3( end",
        r"\x1b[1A\x1b[2K\x0dflexos-vmm: error: forged by the guest",
    ];
    let mut want = vec![HELLO_LINE, "args: print=escapes"];
    want.extend(console);
    out.assert_stdout_lines(&want);
    let headline = out.stderr.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with("flexos-vmm: compartment 0 (app) panicked at "),
        "{out:?}"
    );
    assert!(
        headline.ends_with(r": \x1b[2K\x0dflexos-vmm: error: forged panic\x0asecond line"),
        "{out:?}"
    );
    for line in console {
        out.assert_stderr_contains(&format!("    | {line}\n"));
    }
    // Nothing but newlines among the control characters, anywhere.
    let raw = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');
    assert!(!raw(&out.stdout) && !raw(&out.stderr), "{out:?}");
    assert!(!out
        .stderr
        .lines()
        .any(|l| l.starts_with("flexos-vmm: error")));
}

#[test]
fn a_character_split_across_console_writes_stays_whole() {
    hello(["print=split-utf8"])
        .assert_status(0)
        .assert_stdout_lines(&[
            HELLO_LINE,
            "args: print=split-utf8",
            "split: caf\u{e9} \u{1f600} end",
            r"cut: \xe2\x82x",
        ])
        .assert_stderr_empty();
}

#[test]
fn sigint_stops_every_compartment_with_130() {
    let hello = image("hello");
    let run = Background::start(&[hello.to_str().unwrap(), "--", "spin=forever"], false);
    run.wait_for("hello: spinning");
    let (status, rest, stderr) = run.signal("INT");
    assert_eq!(status, 130, "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        stderr,
        "flexos-vmm: stopped by SIGINT: every compartment stopped\n"
    );
}

#[test]
fn sigterm_stops_a_two_compartment_run_with_143() {
    // Two compartments calling each other: the bench's first result line comes before
    // millions of remote calls.
    let bench = image("gatebench");
    let run = Background::start(
        &["-c", "2", bench.to_str().unwrap(), "--", "calls=2000000"],
        false,
    );
    run.wait_until(|l| l.starts_with("[bench] "), "[bench] ...");
    let (status, _, stderr) = run.signal("TERM");
    assert_eq!(status, 143, "{stderr}");
    assert_eq!(
        stderr,
        "flexos-vmm: stopped by SIGTERM: every compartment stopped\n"
    );
}

#[test]
fn sigterm_while_waiting_for_gdb_removes_the_socket() {
    let dir = TempDir::new("sig-gdb");
    let sock = dir.path().join("gdb.sock");
    let sock_s = sock.to_str().unwrap();
    let hello = image("hello");
    let run = Background::start(&["--gdb", sock_s, hello.to_str().unwrap()], true);
    run.wait_for(&format!(
        "flexos-vmm: waiting for gdb on {sock_s} (target remote {sock_s})"
    ));
    assert!(Path::new(&sock).exists());
    let (status, rest, stdout) = run.signal("TERM");
    assert_eq!(status, 143, "{rest:?}");
    assert_eq!(
        rest,
        ["flexos-vmm: stopped by SIGTERM: every compartment stopped"]
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!sock.exists(), "the run's gdb socket is left behind");
}

/// Runs hello with `guest_args` under `sh -c script`, where the script runs the monitor
/// as `"$@"`; returns the shell's exit status.
fn under_shell(script: &str, guest_args: &[&str]) -> i32 {
    require_kvm();
    let status = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(vmm_path())
        .arg(image("hello"))
        .arg("--")
        .args(guest_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("cannot run sh");
    status.code().expect("sh killed by a signal")
}

#[test]
fn a_closed_stderr_keeps_the_exit_status() {
    assert_eq!(under_shell(r#""$@" 2>&-"#, &["crash=null"]), EXIT_CRASH);
    assert_eq!(under_shell(r#""$@" 2>&-"#, &["exit=3"]), 3);
    // Closed stdout and stdin too: the console output is lost, the status is not.
    assert_eq!(under_shell(r#""$@" <&- >&- 2>&-"#, &["exit=5"]), 5);
}

#[test]
fn a_stderr_pipe_whose_reader_is_gone_keeps_the_exit_status() {
    require_kvm();
    let mut child = Command::new(vmm_path())
        .arg(image("hello"))
        .args(["--", "crash=null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the monitor");
    // Close the only reader before the monitor writes its report.
    drop(child.stderr.take());
    let status = child.wait().expect("wait failed");
    assert_eq!(status.code(), Some(EXIT_CRASH), "{status}");
}

#[test]
fn a_listing_into_a_closed_pipe_still_succeeds() {
    require_kvm();
    let mut child = Command::new(vmm_path())
        .args(["--list-components"])
        .arg(image("gatebench"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the monitor");
    // `flexos-vmm --list-components ... | head -0`: the reader is gone before the listing.
    drop(child.stdout.take());
    let status = child.wait().expect("wait failed");
    assert_eq!(status.code(), Some(0), "{status}");
}
