//! The sandbox (`vmm/src/sandbox.rs`): every thread of the monitor runs under a seccomp
//! filter of its own, on by default.
//!
//! A call outside a thread's filter ends the run with one line naming the thread and
//! the call, and exit 71: checked for every kind of thread through the self-test
//! variable `FLEXOS_SANDBOX_SELFTEST=KIND`, which makes the first thread of that kind
//! call `getppid` (allowed nowhere) right after its filter is on. `--no-seccomp` turns
//! the sandbox off. No thread of a running monitor is left unfiltered (`/proc`).
//!
//! That the filters allow all that each mode needs is checked by the whole end-to-end
//! suite, which runs with the sandbox on: gdb sessions (gdb.rs), `--core` and
//! `--gdb-on-crash` (postmortem.rs), virtio-net under iperf (net.rs, net_device.rs),
//! SIGINT/SIGTERM (hostile.rs), crafted device drivers that reset and break their
//! devices (devices.rs). Here, the modes no other test pins down: the disk on its own
//! thread and in its owner's vCPU thread in 1, 2 and 3 compartments, the idle
//! spinners, and `RUST_LOG=trace`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flexos_e2e::netns::{NetNs, GUEST_IP, TAP};
use flexos_e2e::{
    image, repo_root, require_tool, run, run_env, run_program, vmm_path, Background, Outcome,
    TempDir, EXIT_KVM, HELLO_LINE, TIMEOUT,
};

const SELFTEST: &str = "FLEXOS_SANDBOX_SELFTEST";

/// The report of the self-test's call made by a thread whose name starts with
/// `thread`; checks the exit status and that the report is one whole line.
#[track_caller]
fn assert_violation(out: &Outcome, thread: &str) {
    out.assert_status(EXIT_KVM);
    let line = out.stderr_line("flexos-vmm: sandbox:");
    let prefix = format!("flexos-vmm: sandbox: thread {thread}");
    let rest = " made system call 110 (getppid), which its seccomp filter forbids; the run \
                is stopped (a monitor bug or a compromised monitor: report it; --no-seccomp \
                runs without the sandbox)";
    assert!(
        line.starts_with(&prefix) && line.ends_with(rest),
        "not the report of {thread}'s call\n{out:?}"
    );
    assert_eq!(
        out.stderr.matches("flexos-vmm: sandbox:").count(),
        1,
        "one report\n{out:?}"
    );
}

/// Runs the monitor with `args`, the self-test aimed at threads of kind `kind`.
#[track_caller]
fn selftest(kind: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Outcome {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    run_env(args, [(SELFTEST, kind)])
}

/// A zeroed disk file: the device starts when the driver sets it up, whatever it holds.
fn blank_disk(dir: &TempDir) -> PathBuf {
    dir.write("blank.img", &vec![0u8; 1 << 20])
}

#[test]
fn a_forbidden_call_on_the_monitor_thread_ends_the_run_with_71() {
    // The monitor thread's name is the program's.
    assert_violation(&selftest("main", &[&image("hello")]), "flexos-vmm made");
}

#[test]
fn a_forbidden_call_on_the_signal_thread_ends_the_run_with_71() {
    // The guest spins: the run cannot end before the thread has made its call.
    let out = selftest("signals", &[&image("hello"), &"--", &"spin=forever"]);
    assert_violation(&out, "signals made");
}

#[test]
fn a_forbidden_call_on_a_vcpu_thread_ends_the_run_with_71() {
    let out = selftest("vcpu", &[&image("hello")]);
    assert_violation(&out, "vcpu-app made");
    assert!(
        !out.stdout.contains(HELLO_LINE),
        "the guest ran first\n{out:?}"
    );
    // Any vCPU of a split: the first to get its filter.
    let out = selftest("vcpu", &[&"-c", &"2", &image("gatebench")]);
    assert_violation(&out, "vcpu-");
}

#[test]
fn a_forbidden_call_on_an_idle_spinner_ends_the_run_with_71() {
    let out = selftest(
        "idle",
        &[
            &"--tune",
            &"idle-spinner=on",
            &image("hello"),
            &"--",
            &"spin=forever",
        ],
    );
    assert_violation(&out, "idle-");
}

#[test]
fn a_forbidden_call_on_the_gdb_thread_ends_the_run_with_71() {
    let dir = TempDir::new("sandbox-gdb");
    let sock = dir.path().join("gdb.sock");
    let out = selftest("gdb", &[&"--gdb", &sock, &image("hello")]);
    assert_violation(&out, "gdb made");
}

#[test]
fn a_forbidden_call_on_the_post_mortem_thread_ends_the_run_with_71() {
    let dir = TempDir::new("sandbox-core");
    let out = selftest(
        "post-mortem",
        &[
            &"--core",
            &dir.path(),
            &image("hello"),
            &"--",
            &"spin=forever",
        ],
    );
    assert_violation(&out, "post-mortem made");
}

#[test]
fn a_forbidden_call_on_the_disk_thread_ends_the_run_with_71() {
    let dir = TempDir::new("sandbox-blk");
    let disk = blank_disk(&dir);
    for n in ["1", "2"] {
        let out = selftest(
            "virtio-blk",
            &[
                &"-c",
                &n,
                &"--tune",
                &"blk=thread",
                &"--disk",
                &disk,
                &image("fscheck"),
                &"--",
                &"ls",
            ],
        );
        assert_violation(&out, "virtio-blk made");
    }
}

#[test]
fn a_forbidden_call_on_the_net_thread_ends_the_run_with_71() {
    let ns = NetNs::with_tap("sandbox");
    let vmm = vmm_path();
    let iperf = image("iperf");
    // `env` inside the namespace: the variable reaches the monitor, the caller's
    // RUST_LOG and FLEXOS_KVM_DEVICE do not.
    let out = ns.run_program(
        "env",
        [
            OsString::from("-u"),
            "RUST_LOG".into(),
            "-u".into(),
            "FLEXOS_KVM_DEVICE".into(),
            format!("{SELFTEST}=virtio-net").into(),
            vmm.into_os_string(),
            "--net".into(),
            format!("tap={TAP}").into(),
            iperf.into_os_string(),
            "--".into(),
            format!("ip={GUEST_IP}/24").into(),
        ],
    );
    assert_violation(&out, "virtio-net made");
}

#[test]
fn without_the_sandbox_the_self_test_call_just_returns() {
    let out = selftest("vcpu", &[&"--no-seccomp", &image("hello")]);
    out.assert_status(0)
        .assert_stdout_lines(&[HELLO_LINE, "args: (none)"])
        .assert_stderr_empty();
    assert!(
        run(["--help"]).stdout.contains("--no-seccomp"),
        "--help documents --no-seccomp"
    );
}

#[test]
fn an_unknown_self_test_kind_is_a_usage_error() {
    selftest("vcpus", &[&image("hello")])
        .assert_status(64)
        .assert_stderr_contains("FLEXOS_SANDBOX_SELFTEST=vcpus: want one of main, signals");
}

/// Every thread of `pid` with its name and `Seccomp:` mode.
fn thread_modes(pid: u32) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the monitor's tasks");
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let mode = status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))?
                .trim()
                .to_string();
            Some((comm.trim().to_string(), mode))
        })
        .collect()
}

#[test]
fn no_thread_of_a_running_monitor_is_unfiltered() {
    let dir = TempDir::new("sandbox-proc");
    let sock = dir.path().join("gdb.sock");
    let hello = image("hello");
    let run = Background::start(
        &[
            "--gdb-on-crash",
            sock.to_str().unwrap(),
            "--tune",
            "idle-spinner=on",
            hello.to_str().unwrap(),
            "--",
            "spin=forever",
        ],
        false,
    );
    // The guest runs: the monitor thread and the vCPU have their filters (the vCPU
    // waits for the monitor's). The other threads install theirs as they start; wait
    // for that (the usual timeout only turns a thread never filtered into a failure).
    run.wait_for("hello: spinning");
    let give_up = Instant::now() + TIMEOUT;
    let modes = loop {
        let modes = thread_modes(run.pid());
        if modes.iter().all(|(_, mode)| mode == "2") {
            break modes;
        }
        assert!(
            Instant::now() < give_up && modes.iter().any(|(n, _)| n.starts_with("vcpu-")),
            "a thread without a filter: {modes:?}"
        );
        std::thread::yield_now();
    };
    // KVM's own worker (kvm-nx-lpage-recovery) joins the process's thread group but
    // runs only kernel code.
    let mut names: Vec<&str> = modes
        .iter()
        .filter(|(name, _)| !name.starts_with("kvm-"))
        .map(|(name, _)| name.split('-').next().unwrap_or(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names,
        ["flexos", "idle", "post", "signals", "vcpu"],
        "{modes:?}"
    );
    let (status, _, _) = run.signal("TERM");
    assert_eq!(status, 143);
}

/// A fresh FAT disk (stock mkfs.fat through scripts/mkdisk).
fn fat_disk(dir: &TempDir) -> PathBuf {
    require_tool("mkfs.fat", "dosfstools");
    let img = dir.path().join("fat.img");
    run_program(
        repo_root().join("scripts/mkdisk").to_str().unwrap(),
        [img.as_os_str(), "16".as_ref()],
    )
    .assert_status(0);
    img
}

/// The sqlite bench on `disk` in `n` compartments with `--tune TUNE`, and `envs`.
fn bench_on_disk(disk: &Path, n: u32, tune: &str, envs: &[(&str, &str)]) -> Outcome {
    sqlite_on_disk(disk, n, tune, &["bench", "n=20"], envs)
}

/// The sqlite image on `disk` in `n` compartments with `--tune TUNE`, `guest` arguments
/// and `envs`.
fn sqlite_on_disk(
    disk: &Path,
    n: u32,
    tune: &str,
    guest: &[&str],
    envs: &[(&str, &str)],
) -> Outcome {
    let n = n.to_string();
    let args: Vec<OsString> = [
        "-c".as_ref(),
        n.as_ref(),
        "--tune".as_ref(),
        tune.as_ref(),
        "--disk".as_ref(),
        disk.as_os_str(),
        image("sqlite").as_os_str(),
        "--".as_ref(),
    ]
    .iter()
    .map(|a: &&std::ffi::OsStr| a.to_os_string())
    .chain(guest.iter().map(OsString::from))
    .collect();
    run_env(args, envs.iter().copied())
}

#[track_caller]
fn assert_bench_ran(out: &Outcome) {
    out.assert_status(0);
    assert!(
        out.stdout.contains("\"bench\":\"sqlite\"") && out.stdout.contains("\"inserts\":20"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("sandbox"), "{out:?}");
}

#[test]
fn the_disk_runs_on_its_thread_and_in_its_owners_vcpu_in_every_split() {
    for n in 1..=3 {
        for blk in ["blk=thread", "blk=vcpu"] {
            let dir = TempDir::new("sandbox-disk");
            let disk = fat_disk(&dir);
            assert_bench_ran(&bench_on_disk(&disk, n, blk, &[]));
            // A second run reads what the first wrote.
            let prefix = if n == 1 { "" } else { "[app] " };
            sqlite_on_disk(&disk, n, blk, &["sql=SELECT count(*) FROM tab"], &[])
                .assert_status(0)
                .assert_stdout_lines(&[&format!("{prefix}20")])
                .assert_stderr_empty();
        }
    }
}

#[test]
fn idle_spinners_and_trace_logging_run_under_the_sandbox() {
    let dir = TempDir::new("sandbox-trace");
    let disk = fat_disk(&dir);
    let out = bench_on_disk(
        &disk,
        2,
        "blk=thread,idle-spinner=on",
        &[("RUST_LOG", "trace")],
    );
    assert_bench_ran(&out);
    // Trace lines from the monitor thread, the vCPUs and the devices' activation.
    for needle in ["TRACE", "DEBUG", "first outcome ends the run"] {
        assert!(out.stderr.contains(needle), "no {needle:?}\n{out:?}");
    }
    let out = run_env(
        [
            "-c".as_ref(),
            "2".as_ref(),
            "--tune".as_ref(),
            "idle-spinner=on".as_ref(),
            image("gatebench").as_os_str(),
            "--".as_ref(),
            "calls=1000".as_ref(),
        ],
        [("RUST_LOG", "trace")],
    );
    out.assert_status(0);
    assert!(out.stderr.contains("TRACE"), "{out:?}");
    assert!(!out.stderr.contains("sandbox"), "{out:?}");
}
