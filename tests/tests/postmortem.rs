//! Post-mortem debugging with stock gdb in batch mode: `--core DIR` writes one ELF core
//! per compartment on a crash, which gdb reads next to the image (backtrace, the
//! faulting RIP, memory); `--gdb-on-crash` stops the crashed run and waits for gdb,
//! `--gdb-wait` bounds that wait.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use flexos_e2e::{
    gdb_remote, image, require_tool, run, run_program, run_watching, wait_for_line, Outcome,
    TempDir, EXIT_CRASH, EXIT_USAGE,
};

/// Runs gdb in batch mode on `app`'s image with `core` and `commands`.
fn gdb_on_core(app: &str, core: &Path, commands: &[&str]) -> Outcome {
    require_tool("gdb", "gdb");
    let mut args: Vec<String> = vec!["-batch".into(), "-nx".into()];
    args.push(image(app).display().to_string());
    args.push(core.display().to_string());
    for c in commands {
        args.push("-ex".into());
        args.push(c.to_string());
    }
    run_program("gdb", args)
}

#[track_caller]
fn assert_has(out: &Outcome, needle: &str) {
    assert!(
        out.stdout.contains(needle),
        "gdb output should contain {needle:?}\n{out:?}"
    );
}

/// The value of a register line such as `     rip 0x00000000001006d8    rsp ...` of the
/// crash report.
fn report_register(vmm: &Outcome, name: &str) -> u64 {
    let line = vmm.stderr_line(&format!("{name} 0x"));
    let hex = line
        .split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .expect("a value follows the register name");
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex register value")
}

/// The value gdb's `info registers rip` prints (`rip  0x1006d8  0x1006d8 <f+24>`).
fn gdb_rip(gdb: &Outcome) -> u64 {
    let line = gdb
        .stdout
        .lines()
        .find(|l| l.starts_with("rip "))
        .unwrap_or_else(|| panic!("no rip line\n{gdb:?}"));
    let hex = line.split_whitespace().nth(1).expect("rip value");
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex rip")
}

#[test]
fn core_of_a_null_dereference_shows_backtrace_rip_and_memory() {
    let dir = TempDir::new("core-hello");
    // A directory that does not exist yet is created.
    let cores = dir.path().join("cores");
    let vmm = run([
        "--core".as_ref(),
        cores.as_os_str(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "crash=null".as_ref(),
    ]);
    vmm.assert_status(EXIT_CRASH);
    let core = cores.join("hello.0.app.core");
    assert_eq!(
        vmm.stderr_line("core files:").trim(),
        format!("core files: {}", core.display()),
        "{vmm:?}"
    );
    let gdb = gdb_on_core("hello", &core, &["bt", "info registers rip", "x/s 0xf0000"]);
    assert_has(&gdb, "Program terminated with signal SIGSEGV");
    assert_has(&gdb, "#0  hello::crash_null () at apps/hello/src/main.rs:");
    assert_has(&gdb, "in hello::main () at apps/hello/src/main.rs:");
    assert_eq!(
        gdb_rip(&gdb),
        report_register(&vmm, "rip"),
        "{gdb:?}\n{vmm:?}"
    );
    // The boot info the monitor wrote into the compartment's low memory.
    assert_has(&gdb, "0xf0000:\t\"FLEXBOOT");
}

#[test]
fn a_crash_in_the_callee_writes_a_core_per_compartment() {
    let dir = TempDir::new("core-peers");
    let vmm = run([
        "-c".as_ref(),
        "2".as_ref(),
        "--core".as_ref(),
        dir.path().as_os_str(),
        image("gatecheck").as_os_str(),
        "--".as_ref(),
        "peer-death".as_ref(),
    ]);
    vmm.assert_status(EXIT_CRASH);
    let (app, victim) = (
        dir.path().join("gatecheck.0.app.core"),
        dir.path().join("gatecheck.1.victim.core"),
    );
    assert_eq!(
        vmm.stderr_line("core files:").trim(),
        format!("core files: {}, {}", app.display(), victim.display()),
        "{vmm:?}"
    );
    let crashed = gdb_on_core("gatecheck", &victim, &["bt", "info registers rip"]);
    assert_has(&crashed, "Program terminated with signal SIGSEGV");
    assert_has(&crashed, "#0  gatecheck::victim::crash_in_callee () at ");
    assert_eq!(
        gdb_rip(&crashed),
        report_register(&vmm, "rip"),
        "{crashed:?}\n{vmm:?}"
    );
    // The caller was only stopped, wherever it was: inside its gate call.
    let caller = gdb_on_core("gatecheck", &app, &["bt"]);
    assert_has(&caller, "Program terminated with signal SIGSTOP");
    assert_has(
        &caller,
        "gatecheck::peer_death () at apps/gatecheck/src/main.rs:",
    );
}

#[test]
fn a_core_directory_that_cannot_be_written_is_a_warning() {
    let dir = TempDir::new("core-bad");
    let file = dir.write("plain", b"not a directory");
    let cores = file.join("cores");
    let vmm = run([
        "--core".as_ref(),
        cores.as_os_str(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "crash=null".as_ref(),
    ]);
    vmm.assert_status(EXIT_CRASH);
    let warning = vmm.stderr_line("flexos-vmm: warning:");
    assert!(
        warning.starts_with(&format!(
            "flexos-vmm: warning: cannot write core files to {}: ",
            cores.display()
        )),
        "{vmm:?}"
    );
    assert_eq!(vmm.stderr.matches("warning").count(), 1, "{vmm:?}");
    vmm.stderr_line("flexos-vmm: compartment 0 (app) crashed: page fault");
    assert!(!vmm.stderr.contains("core files:"), "{vmm:?}");
}

#[test]
fn a_clean_run_writes_no_core() {
    let dir = TempDir::new("core-clean");
    let cores = dir.path().join("cores");
    let vmm = run([
        "--core".as_ref(),
        cores.as_os_str(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "exit=3".as_ref(),
    ]);
    vmm.assert_status(3).assert_stderr_empty();
    assert!(!cores.exists(), "{vmm:?}");
}

#[test]
fn gdb_attaches_after_a_crash_and_sees_the_segfault() {
    require_tool("gdb", "gdb");
    let dir = TempDir::new("gdb-on-crash");
    let socket = dir.path().join("crash.sock");
    let elf = image("hello");
    let args: Vec<String> = vec![
        "--gdb-on-crash".into(),
        socket.display().to_string(),
        elf.display().to_string(),
        "--".into(),
        "crash=null".into(),
    ];
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));
    let line = wait_for_line(&lines, "waiting for gdb");
    assert_eq!(
        line.trim_end(),
        format!(
            "flexos-vmm: compartment 0 (app) crashed; waiting for gdb on {0} (target remote {0})",
            socket.display()
        )
    );
    let gdb = gdb_remote(
        &elf,
        &socket,
        &[
            "info threads",
            // The crash stop is the first thing gdb hears when it lets the run go.
            "continue",
            "bt",
            "info registers rip",
            "detach",
        ],
    );
    let vmm = monitor.join().expect("monitor thread panicked");
    vmm.assert_status(EXIT_CRASH);
    assert_has(&gdb, "Thread 1.1 (compartment 0 (app))");
    assert_has(&gdb, "received signal SIGSEGV, Segmentation fault.");
    assert_has(&gdb, "#0  hello::crash_null () at apps/hello/src/main.rs:");
    assert_eq!(
        gdb_rip(&gdb),
        report_register(&vmm, "rip"),
        "{gdb:?}\n{vmm:?}"
    );
    vmm.stderr_line("flexos-vmm: compartment 0 (app) crashed: page fault");
    assert!(!socket.exists(), "the socket file goes with the run");
}

#[test]
fn without_gdb_the_wait_ends_with_the_report() {
    let dir = TempDir::new("gdb-wait");
    let socket = dir.path().join("crash.sock");
    let vmm = run([
        "--gdb-on-crash".as_ref(),
        socket.as_os_str(),
        "--gdb-wait".as_ref(),
        "1".as_ref(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "crash=null".as_ref(),
    ]);
    vmm.assert_status(EXIT_CRASH);
    vmm.stderr_line("flexos-vmm: compartment 0 (app) crashed; waiting for gdb on ");
    vmm.stderr_line("flexos-vmm: compartment 0 (app) crashed: page fault");
    vmm.stderr_line("backtrace:");
}

#[test]
fn a_clean_run_under_gdb_on_crash_is_unchanged() {
    let dir = TempDir::new("gdb-clean");
    let socket = dir.path().join("crash.sock");
    run([
        "--gdb-on-crash".as_ref(),
        socket.as_os_str(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "exit=3".as_ref(),
    ])
    .assert_status(3)
    .assert_stderr_empty();
}

#[test]
fn bad_gdb_on_crash_usage_fails_before_the_run() {
    // An address that cannot be served: exit 64 before any VM runs (no guest output).
    let vmm = run([
        "--gdb-on-crash",
        "no-such-host.invalid:1",
        image("hello").to_str().unwrap(),
        "--",
        "crash=null",
    ]);
    vmm.assert_status(EXIT_USAGE);
    assert!(vmm.stdout.is_empty(), "{vmm:?}");
    vmm.stderr_line("flexos-vmm: error:");
    // --gdb excludes --gdb-on-crash and --core; --gdb-wait needs --gdb-on-crash.
    for args in [
        &["--gdb", "a.sock", "--gdb-on-crash", "b.sock"][..],
        &["--gdb-wait", "1"][..],
        &["--gdb", "a.sock", "--core", "cores"][..],
    ] {
        let mut args: Vec<&str> = args.to_vec();
        let elf = image("hello");
        args.push(elf.to_str().unwrap());
        let vmm = run(&args);
        vmm.assert_status(EXIT_USAGE);
        vmm.stderr_line("flexos-vmm: error:");
    }
}

#[test]
fn gdb_attaches_to_the_crashed_compartment_of_two() {
    require_tool("gdb", "gdb");
    let dir = TempDir::new("gdb-on-crash-2");
    let socket = dir.path().join("crash.sock");
    let elf = image("gatecheck");
    let args: Vec<String> = vec![
        "-c".into(),
        "2".into(),
        "--gdb-on-crash".into(),
        socket.display().to_string(),
        elf.display().to_string(),
        "--".into(),
        "peer-death".into(),
    ];
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));
    let line = wait_for_line(&lines, "waiting for gdb");
    assert!(
        line.starts_with("flexos-vmm: compartment 1 (victim) crashed; waiting for gdb on "),
        "{line}"
    );
    let gdb = gdb_remote(
        &elf,
        &socket,
        &[
            // Selected on attach: the crashed compartment.
            "bt 1",
            "info threads",
            "continue",
            "detach",
        ],
    );
    let vmm = monitor.join().expect("monitor thread panicked");
    vmm.assert_status(EXIT_CRASH);
    assert_has(&gdb, "#0  gatecheck::victim::crash_in_callee () at ");
    assert_has(&gdb, "(compartment 0 (app))");
    assert_has(&gdb, "(compartment 1 (victim))");
    assert_has(&gdb, "received signal SIGSEGV, Segmentation fault.");
    vmm.stderr_line("flexos-vmm: compartment 1 (victim) crashed: ");
}
