//! The GDB stub, driven by stock gdb in batch mode: breakpoints, backtraces, register
//! and memory reads, single steps, `finish`, a clean exit, and a crash that stops with
//! SIGSEGV at the faulting instruction and ends with the usual report after `detach`.

use std::sync::mpsc;
use std::thread;

use flexos_e2e::{
    gdb_remote, image, require_tool, run, run_watching, wait_for_line, Outcome, TempDir, EXIT_CRASH,
};

/// Boots `app` with `--gdb <socket>` and `vmm_args`, runs gdb with `commands` against
/// it, and returns (gdb's outcome, the monitor's outcome).
fn debug_session(
    app: &str,
    vmm_args: &[&str],
    guest_args: &[&str],
    commands: &[&str],
) -> (Outcome, Outcome) {
    require_tool("gdb", "gdb");
    let dir = TempDir::new("gdb");
    let socket = dir.path().join("gdb.sock");
    let elf = image(app);
    let mut args: Vec<String> = vec!["--gdb".into(), socket.display().to_string()];
    args.extend(vmm_args.iter().map(|a| a.to_string()));
    args.push(elf.display().to_string());
    args.push("--".into());
    args.extend(guest_args.iter().map(|a| a.to_string()));
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));

    wait_for_line(&lines, "waiting for gdb");
    let gdb = gdb_remote(&elf, &socket, commands);
    let vmm = monitor.join().expect("monitor thread panicked");
    (gdb, vmm)
}

#[track_caller]
fn assert_has(out: &Outcome, needle: &str) {
    assert!(
        out.stdout.contains(needle),
        "gdb output should contain {needle:?}\n{out:?}"
    );
}

#[test]
fn breakpoint_backtrace_registers_memory_step_finish_exit() {
    let (gdb, vmm) = debug_session(
        "hello",
        &[],
        &["exit=3"],
        &[
            "info threads",
            "break hello::main",
            "continue",
            "bt",
            "info registers rip",
            "x/4gx $rsp",
            // Writes: a scratch register (dead at a function's first line) and a stack
            // word below RSP (no red zone in the guest ABI), each read back.
            "set $r11 = 0xfeedf00d",
            "info registers r11",
            "set language c",
            "set {long}($rsp - 64) = 0x1122334455667788",
            "set language auto",
            "x/gx $rsp - 64",
            "stepi",
            "info registers rip",
            "finish",
            "finish",
            "continue",
        ],
    );
    assert_has(&gdb, "Thread 1.1 (compartment 0 (app))");
    assert!(
        gdb.stdout
            .lines()
            .any(|l| l.starts_with("r11") && l.contains("0xfeedf00d")),
        "register write should read back\n{gdb:?}"
    );
    assert_has(&gdb, ":\t0x1122334455667788");
    assert_has(&gdb, "Breakpoint 1, hello::main ()");
    assert_has(&gdb, "#0  hello::main () at apps/hello/src/main.rs:");
    assert_has(&gdb, "in flexos_kernel::start::_start ()");
    assert_has(&gdb, "<hello::main+");
    // x/4gx prints the stack address followed by two 8-byte words, twice.
    let words = gdb
        .stdout
        .lines()
        .filter(|l| l.starts_with("0x1") && l.matches("\t0x").count() == 2)
        .count();
    assert_eq!(words, 2, "x/4gx $rsp should print two lines\n{gdb:?}");
    // stepi moved the PC: the two `rip` lines differ.
    let rips: Vec<&str> = gdb
        .stdout
        .lines()
        .filter(|l| l.starts_with("rip "))
        .collect();
    assert_eq!(rips.len(), 2, "{gdb:?}");
    assert_ne!(rips[0], rips[1], "stepi must move the PC\n{gdb:?}");
    // `finish` leaves boot_info's inlined atomic load, then boot_info, back into main.
    assert!(
        gdb.stdout
            .lines()
            .any(|l| l.starts_with("hello::main () at apps/hello/src/main.rs:")),
        "finish should return into hello::main\n{gdb:?}"
    );
    assert_has(&gdb, "[Inferior 1 (process 1) exited with code 03]");
    vmm.assert_status(3)
        .assert_stdout_lines(&["Hello from FlexOS compartment 0 of 1!", "args: exit=3"]);
    assert!(
        vmm.stderr.contains("waiting for gdb on"),
        "the monitor says where gdb should connect\n{vmm:?}"
    );
}

#[test]
fn a_crash_stops_with_sigsegv_and_detach_ends_the_run_with_the_report() {
    let (gdb, vmm) = debug_session(
        "hello",
        &[],
        &["crash=null"],
        &["continue", "bt", "info registers rip", "detach"],
    );
    assert_has(&gdb, "Program received signal SIGSEGV");
    assert_has(&gdb, "#0  hello::crash_null () at apps/hello/src/main.rs:");
    assert_has(&gdb, "in hello::main ()");
    assert_has(&gdb, "<hello::crash_null+");
    vmm.assert_status(EXIT_CRASH);
    assert!(
        vmm.stderr.contains(
            "flexos-vmm: compartment 0 (app) crashed: page fault (#PF) at hello::crash_null+"
        ),
        "{vmm:?}"
    );
}

#[test]
fn continuing_after_a_crash_terminates_the_program() {
    let (gdb, vmm) = debug_session("hello", &[], &["crash=ud"], &["continue", "continue"]);
    assert_has(&gdb, "Program received signal SIGILL");
    assert_has(&gdb, "Program terminated with signal SIGILL");
    vmm.assert_status(EXIT_CRASH);
    assert!(
        vmm.stderr
            .contains("invalid opcode (#UD) at hello::crash_ud+"),
        "{vmm:?}"
    );
}

#[test]
fn kill_ends_the_run() {
    let (gdb, vmm) = debug_session(
        "hello",
        &[],
        &[],
        &["break hello::main", "continue", "kill"],
    );
    assert_has(&gdb, "Breakpoint 1, hello::main ()");
    vmm.assert_status(EXIT_CRASH);
    assert!(
        vmm.stderr.contains("the run was killed from gdb"),
        "{vmm:?}"
    );
    assert!(
        vmm.stdout.is_empty(),
        "main never ran past the breakpoint\n{vmm:?}"
    );
}

#[test]
fn a_breakpoint_in_compartment_two_of_a_two_compartment_run() {
    let (gdb, vmm) = debug_session(
        "gatebench",
        &["--compartments", "2"],
        &["calls=100"],
        &[
            "info threads",
            "break gatebench::parts::{impl#0}::sum6",
            "continue",
            "info threads",
            "bt",
            "info registers rip",
            "x/4gx $rsp",
            "finish",
            "stepi",
            "info registers rip",
            "delete",
            "continue",
        ],
    );
    assert_has(&gdb, "1    Thread 1.1 (compartment 0 (bench))");
    assert_has(&gdb, "2    Thread 1.2 (compartment 1 (callee))");
    // The callee's compartment (gdb thread 2) stops; bench (thread 1) waits in its call.
    assert_has(
        &gdb,
        "Thread 2 hit Breakpoint 1, gatebench::parts::{impl#0}::sum6 ()",
    );
    assert_has(
        &gdb,
        "* 2    Thread 1.2 (compartment 1 (callee)) gatebench::parts::{impl#0}::sum6 ()",
    );
    assert_has(&gdb, "#0  gatebench::parts::{impl#0}::sum6 ()");
    assert_has(&gdb, "in flexos_kernel::gate::serve_forever ()");
    assert_has(&gdb, "<gatebench::parts::{impl#0}::sum6+");
    let rips: Vec<&str> = gdb
        .stdout
        .lines()
        .filter(|l| l.starts_with("rip "))
        .collect();
    assert_eq!(rips.len(), 2, "{gdb:?}");
    assert_ne!(
        rips[0], rips[1],
        "finish and stepi must move the PC\n{gdb:?}"
    );
    // `finish` returns into the dispatcher that called the method.
    assert!(
        gdb.stdout.lines().any(|l| l.starts_with(
            "gatebench::parts::callee::{impl#0}::dispatch<gatebench::parts::Callee> () at "
        )),
        "finish should return into the callee's dispatcher\n{gdb:?}"
    );
    assert_has(&gdb, "[Inferior 1 (process 1) exited normally]");
    vmm.assert_status(0);
    assert!(
        vmm.stdout
            .contains("\"case\":\"gate-remote-6\",\"compartments\":2"),
        "gatebench finished every case after the debugging session\n{vmm:?}"
    );
}

/// A minimal remote-protocol client: gdb in batch mode cannot send Ctrl-C to a
/// running target, so the interrupt test speaks the protocol itself.
mod rsp {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    pub struct Client(UnixStream);

    impl Client {
        pub fn connect(path: &std::path::Path) -> Client {
            Client::try_connect(path).expect("connect to the gdb socket")
        }

        pub fn try_connect(path: &std::path::Path) -> std::io::Result<Client> {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(Client(s))
        }

        pub fn send(&mut self, body: &str) {
            let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
            write!(self.0, "${body}#{sum:02x}").unwrap();
        }

        pub fn raw(&mut self, bytes: &[u8]) {
            self.0.write_all(bytes).unwrap();
        }

        /// Reads one packet (acknowledging it) and returns its body.
        pub fn recv(&mut self) -> String {
            let mut byte = [0u8];
            loop {
                self.0.read_exact(&mut byte).expect("a reply from the stub");
                if byte[0] == b'$' {
                    break;
                }
            }
            let mut body = Vec::new();
            loop {
                self.0.read_exact(&mut byte).unwrap();
                if byte[0] == b'#' {
                    break;
                }
                body.push(byte[0]);
            }
            let mut sum = [0u8; 2];
            self.0.read_exact(&mut sum).unwrap();
            // The stub may close right after its last reply (detach, kill).
            let _ = self.0.write_all(b"+");
            String::from_utf8(body).unwrap()
        }
    }
}

#[test]
fn ctrl_c_stops_a_running_guest() {
    let dir = TempDir::new("gdb-int");
    let socket = dir.path().join("gdb.sock");
    let elf = image("gatebench");
    let args: Vec<String> = vec![
        "--gdb".into(),
        socket.display().to_string(),
        "--mem".into(),
        "256".into(),
        "--compartments".into(),
        "2".into(),
        elf.display().to_string(),
        "--".into(),
        "calls=4000000".into(),
    ];
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));
    wait_for_line(&lines, "waiting for gdb");
    let mut c = rsp::Client::connect(&socket);
    c.send("?");
    let first = c.recv();
    assert!(
        first.starts_with('T') || first.starts_with('S'),
        "initial stop reply: {first:?}"
    );
    c.send("vCont;c");
    // The guest's first result line (the quick in-compartment case) proves it is
    // running; the remote cases that follow take minutes at this call count, so the
    // interrupt lands while the vCPUs are inside KVM_RUN.
    wait_for_line(&lines, "\"case\":\"function-call\"");
    c.raw(&[0x03]);
    let stop = c.recv();
    assert!(
        stop.starts_with("T02"),
        "Ctrl-C should stop the run with SIGINT (T02...), got {stop:?}"
    );
    c.send("vKill;1");
    let vmm = monitor.join().expect("monitor thread panicked");
    vmm.assert_status(EXIT_CRASH);
    assert!(
        vmm.stderr.contains("the run was killed from gdb"),
        "{vmm:?}"
    );
}

#[test]
fn a_thread_id_beyond_the_compartments_names_none() {
    // GDB thread ids are compartment + 1. An id past u32 once wrapped onto compartment
    // 0 (0x1_0000_0001 read compartment 0's registers); it names no compartment.
    let dir = TempDir::new("gdb-tid");
    let socket = dir.path().join("gdb.sock");
    let args: Vec<String> = vec![
        "--gdb".into(),
        socket.display().to_string(),
        image("hello").display().to_string(),
    ];
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));
    wait_for_line(&lines, "waiting for gdb");
    let mut c = rsp::Client::connect(&socket);
    c.send("?");
    c.recv();
    c.send("Hg1");
    assert_eq!(c.recv(), "OK");
    c.send("g");
    let own = c.recv();
    assert!(!own.starts_with('E'), "compartment 0's registers: {own:?}");
    c.send("Hg100000001");
    let set = c.recv();
    c.send("g");
    let wrapped = c.recv();
    assert!(
        set.starts_with('E') || wrapped.starts_with('E'),
        "thread 0x100000001 must not read compartment 0 (Hg -> {set:?}, g -> {wrapped:?})"
    );
    c.send("vKill;1");
    let vmm = monitor.join().expect("monitor thread panicked");
    vmm.assert_status(EXIT_CRASH);
}

#[test]
fn an_image_truncated_during_the_run_still_gets_its_report() {
    // The monitor holds before the first instruction until a debugger attaches: the
    // image file is truncated in that window, then the guest crashes. The report is
    // built from the bytes read at start (it used to fault on the file: SIGBUS, 135).
    let dir = TempDir::new("gdb-trunc");
    let socket = dir.path().join("gdb.sock");
    let elf = dir.path().join("hello.elf");
    std::fs::copy(image("hello"), &elf).unwrap();
    let args: Vec<String> = vec![
        "--gdb".into(),
        socket.display().to_string(),
        elf.display().to_string(),
        "--".into(),
        "crash=null".into(),
    ];
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));
    wait_for_line(&lines, "waiting for gdb");
    std::fs::File::create(&elf).unwrap().set_len(0).unwrap();
    let mut c = rsp::Client::connect(&socket);
    c.send("?");
    c.recv();
    c.send("vCont;c");
    let stop = c.recv();
    assert!(stop.starts_with("T0b"), "SIGSEGV expected, got {stop:?}");
    c.send("D");
    assert_eq!(c.recv(), "OK");
    let vmm = monitor.join().expect("monitor thread panicked");
    vmm.assert_status(EXIT_CRASH);
    assert!(
        vmm.stderr.contains(
            "flexos-vmm: compartment 0 (app) crashed: page fault (#PF) at hello::crash_null+"
        ),
        "{vmm:?}"
    );
    vmm.assert_stderr_contains("hello::main+");
}

#[test]
fn a_breakpoint_in_the_shared_region_is_refused_and_leaves_it_intact() {
    // The shared region is the same memory in every compartment: a planted 0xCC used
    // to be read back as the second compartment's "original" byte and outlive the
    // breakpoint, corrupting the region header (the guests then exit 63).
    let (gdb, vmm) = debug_session(
        "gatebench",
        &["--compartments", "2"],
        &["calls=100"],
        &[
            "break *0x100000000",
            "break gatebench::main",
            "continue",
            "delete 1",
            "continue",
            "delete",
            "continue",
        ],
    );
    assert!(
        gdb.stderr
            .contains("Cannot insert breakpoint 1.\nCannot access memory at address 0x100000000"),
        "gdb should be refused the shared-region breakpoint\n{gdb:?}"
    );
    assert_has(&gdb, "Thread 1 hit Breakpoint 2, ");
    assert_has(&gdb, "[Inferior 1 (process 1) exited normally]");
    vmm.assert_status(0);
    assert!(
        vmm.stdout
            .contains("\"case\":\"gate-remote-6\",\"compartments\":2"),
        "gatebench ran every case with an intact shared region\n{vmm:?}"
    );
}

#[test]
fn a_second_monitor_cannot_take_a_live_monitors_socket() {
    let dir = TempDir::new("gdb-live");
    let socket = dir.path().join("gdb.sock");
    let sock = socket.display().to_string();
    let first = {
        let args = vec![
            "--gdb".to_string(),
            sock.clone(),
            image("hello").display().to_string(),
            "--".into(),
            "exit=3".into(),
        ];
        let (tx, lines) = mpsc::channel();
        let first = thread::spawn(move || run_watching(args, tx));
        wait_for_line(&lines, "waiting for gdb");
        first
    };
    let second = run(["--gdb", &sock, &image("hello").display().to_string()]);
    second.assert_status(flexos_e2e::EXIT_USAGE);
    assert_eq!(
        second.stderr,
        format!("flexos-vmm: error: --gdb {sock}: another monitor is serving gdb on that socket\n"),
    );
    // The first monitor took the probe for what it was and still serves gdb.
    let mut c = rsp::Client::connect(&socket);
    c.send("?");
    c.recv();
    c.send("vCont;c");
    assert_eq!(c.recv(), "W03");
    let first = first.join().expect("monitor thread panicked");
    first.assert_status(3);
    assert!(
        !socket.exists(),
        "the socket file goes once gdb is connected"
    );
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = TempDir::new("gdb-stale");
    let socket = dir.path().join("gdb.sock");
    // A socket nobody listens on, as a monitor that was killed leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let args = vec![
        "--gdb".to_string(),
        socket.display().to_string(),
        image("hello").display().to_string(),
        "--".into(),
        "exit=4".into(),
    ];
    let (tx, lines) = mpsc::channel();
    let monitor = thread::spawn(move || run_watching(args, tx));
    // The stale file exists from the start: wait for the monitor to say it listens.
    wait_for_line(&lines, "waiting for gdb");
    let mut c = rsp::Client::connect(&socket);
    c.send("?");
    c.recv();
    c.send("vCont;c");
    assert_eq!(c.recv(), "W04");
    monitor
        .join()
        .expect("monitor thread panicked")
        .assert_status(4);
}
