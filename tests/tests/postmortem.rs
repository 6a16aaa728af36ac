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

/// Runs `hello crash=null` with `--core cores`; the run must crash as usual.
fn crash_with_cores(cores: &Path) -> Outcome {
    let vmm = run([
        "--core".as_ref(),
        cores.as_os_str(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "crash=null".as_ref(),
    ]);
    vmm.assert_status(EXIT_CRASH);
    vmm.stderr_line("flexos-vmm: compartment 0 (app) crashed: page fault");
    vmm
}

/// True when `path` holds an ELF core (ET_CORE), the kind gdb reads.
fn is_elf_core(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.len() > 64 && bytes.starts_with(b"\x7fELF") && bytes[16..18] == 4u16.to_le_bytes()
}

#[test]
fn a_link_planted_at_the_core_name_is_never_written_through() {
    let dir = TempDir::new("core-links");
    // A root-only file another user wants overwritten, and two links to it where the
    // cores of two runs would go.
    let victim = dir.write("victim", b"root's secret");
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cores = dir.path().join("cores");
    std::fs::create_dir(&cores).unwrap();
    let planted = cores.join("hello.0.app.core");
    std::os::unix::fs::symlink("../victim", &planted).unwrap();

    let vmm = crash_with_cores(&cores);
    let core = cores.join("hello.0.app.1.core");
    assert_eq!(
        vmm.stderr_line("flexos-vmm: warning:"),
        format!(
            "flexos-vmm: warning: {} is a symbolic link, not a core file: left it alone and wrote this core to {}",
            planted.display(),
            core.display()
        ),
        "{vmm:?}"
    );
    assert_eq!(
        vmm.stderr_line("core files:").trim(),
        format!("core files: {}", core.display())
    );
    assert!(is_elf_core(&core), "{vmm:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's secret");
    assert!(std::fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());

    // A hard link at the name: the next free name, the linked file untouched.
    std::fs::remove_file(&planted).unwrap();
    std::fs::remove_file(&core).unwrap();
    std::fs::hard_link(&victim, &planted).unwrap();
    let vmm = crash_with_cores(&cores);
    vmm.assert_stderr_contains(&format!(
        "flexos-vmm: warning: {} is a file with other hard links, not a core file: left it alone and wrote this core to {}",
        planted.display(),
        core.display()
    ));
    assert!(is_elf_core(&core), "{vmm:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's secret");
}

#[test]
fn a_directory_symlink_given_as_core_dir_is_not_followed() {
    let dir = TempDir::new("core-dirlink");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let cores = dir.path().join("cores");
    std::os::unix::fs::symlink(&elsewhere, &cores).unwrap();
    let vmm = crash_with_cores(&cores);
    assert_eq!(
        vmm.stderr_line("flexos-vmm: warning:"),
        format!(
            "flexos-vmm: warning: cannot write core files to {}: it is a symbolic link (not followed)",
            cores.display()
        )
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn a_fifo_at_the_core_name_neither_hangs_the_run_nor_loses_the_report() {
    let dir = TempDir::new("core-fifo");
    let cores = dir.path().join("cores");
    std::fs::create_dir(&cores).unwrap();
    let fifo = cores.join("hello.0.app.core");
    let made = run_program("mkfifo", [fifo.as_os_str()]);
    made.assert_status(0);
    // Before the fix the monitor blocked in open() until the test's timeout.
    let vmm = crash_with_cores(&cores);
    let core = cores.join("hello.0.app.1.core");
    vmm.assert_stderr_contains(&format!(
        "flexos-vmm: warning: {} is a FIFO, not a core file: left it alone and wrote this core to {}",
        fifo.display(),
        core.display()
    ));
    assert!(is_elf_core(&core), "{vmm:?}");
}

#[test]
fn a_core_cut_short_by_a_full_file_system_is_removed() {
    require_tool("unshare", "util-linux");
    let dir = TempDir::new("core-full");
    let cores = dir.path().join("cores");
    std::fs::create_dir(&cores).unwrap();
    // A 64 KiB tmpfs over the directory, in a mount namespace of the run's own (gone
    // with it): the core (hundreds of KiB) cannot fit. The listing after the run is
    // what the directory held at the end.
    let script = r#"mount -t tmpfs -o size=64k flexos-full "$1" || exit 99
"$2" --core "$1" "$3" -- crash=null
echo "status=$?"
ls -A "$1""#;
    let out = run_program(
        "unshare",
        [
            "--mount".as_ref(),
            "--propagation".as_ref(),
            "private".as_ref(),
            "sh".as_ref(),
            "-c".as_ref(),
            script.as_ref(),
            "sh".as_ref(),
            cores.as_os_str(),
            flexos_e2e::vmm_path().as_os_str(),
            image("hello").as_os_str(),
        ],
    );
    out.assert_status(0);
    // The monitor's status, and then nothing: `ls -A` found the directory empty.
    assert_eq!(out.stdout.lines().last(), Some("status=70"), "{out:?}");
    let warning = out.stderr_line("flexos-vmm: warning:");
    assert_eq!(
        warning,
        format!(
            "flexos-vmm: warning: core of compartment 0: cannot write {}: No space left on device (os error 28); removed the partial file",
            cores.join("hello.0.app.core").display()
        ),
        "{out:?}"
    );
    out.stderr_line("flexos-vmm: compartment 0 (app) crashed: page fault");
    assert!(!out.stderr.contains("core files:"), "{out:?}");
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
