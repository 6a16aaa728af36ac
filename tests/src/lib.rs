//! Helpers shared by the end-to-end tests in `tests/tests/`.
//!
//! The tests boot real guest images under `/dev/kvm` with the release monitor that
//! `scripts/build` produces (`target/release/flexos-vmm`, `target/images/<app>.elf`).
//! Nothing here skips: a missing binary, image or KVM device fails the test with a
//! message that says what to do (docs/usage.md, tests and fuzzing), and so does a binary or image older
//! than a source it is built from ([`fresh`]).
//!
//! - [`run`] / [`run_env`] / [`hello`]: run the monitor with a timeout and collect its
//!   exit status, stdout and stderr into an [`Outcome`].
//! - [`netns`] and [`iperf`]: network namespaces with a tap, and the `iperf` image
//!   against stock clients in one.
//! - [`TempDir`]: a scratch directory for crafted files, removed on drop.
//! - [`ElfBuilder`] (from `flexos-testkit`, shared with the unit tests and fuzz
//!   targets): a minimal ELF whose fields can be bent one at a time, to feed the monitor
//!   bad images.

mod background;
pub mod crafted;
pub mod fresh;
pub mod iperf;
pub mod netns;
pub mod nginx;
pub mod redis;

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use background::Background;
pub use flexos_testkit::{elf, ElfBuilder, IMAGE_BASE};

/// How long one monitor run may take before it is killed and the test fails. A boot of
/// `hello` takes a few milliseconds; this only exists so that no test can hang.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status: command-line or placement mistake.
pub const EXIT_USAGE: i32 = 64;
/// Exit status: the image is not something the monitor can boot.
pub const EXIT_BAD_IMAGE: i32 = 65;
/// Exit status: a file was not found or could not be read.
pub const EXIT_NO_INPUT: i32 = 66;
/// Exit status: a compartment crashed or violated isolation.
pub const EXIT_CRASH: i32 = 70;
/// Exit status: KVM is unavailable or failed.
pub const EXIT_KVM: i32 = 71;

/// The first line of every `hello` run in a one-compartment VM.
pub const HELLO_LINE: &str = "Hello from FlexOS compartment 0 of 1!";

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent directory", manifest.display()))
        .to_path_buf()
}

/// `target/release/<name>`, a binary `scripts/build` makes; panics if it has not been
/// built or is older than a source it is built from (see [`fresh`]).
fn release_binary(name: &str) -> PathBuf {
    let path = repo_root().join("target/release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build first",
        path.display()
    );
    fresh::require_fresh(&path, &path.with_extension("d"), None);
    path
}

/// `target/release/flexos-vmm` (see [`release_binary`]).
pub fn vmm_path() -> PathBuf {
    release_binary("flexos-vmm")
}

/// `target/release/flexos-explore` (see [`release_binary`]).
pub fn explore_path() -> PathBuf {
    release_binary("flexos-explore")
}

/// `target/images/<app>.elf`; panics if it has not been built or is older than a source
/// it is built from (see [`fresh`]).
pub fn image(app: &str) -> PathBuf {
    let root = repo_root();
    let path = root.join("target/images").join(format!("{app}.elf"));
    assert!(
        path.is_file(),
        "the guest image {} is missing: run scripts/build first",
        path.display()
    );
    let built = root
        .join("guest-kernel/target/x86_64-unknown-none/release")
        .join(app);
    fresh::require_fresh(&path, &built.with_extension("d"), Some(&built));
    path
}

/// Panics unless `/dev/kvm` exists and this user can open it read-write.
pub fn require_kvm() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let dev = Path::new("/dev/kvm");
        if !dev.exists() {
            return Err(
                "/dev/kvm does not exist: load the kvm module (modprobe kvm_intel \
                        or kvm_amd) on a machine with hardware virtualization"
                    .into(),
            );
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev)
            .map(drop)
            .map_err(|e| {
                format!(
                    "cannot open /dev/kvm read-write ({e}): load the kvm module / run as a \
                     user with access to /dev/kvm (the kvm group)"
                )
            })
    });
    if let Err(msg) = result {
        panic!("end-to-end tests need KVM: {msg}");
    }
}

/// Everything a monitor run produced.
#[derive(Clone)]
pub struct Outcome {
    /// The command line, for failure messages.
    pub command: String,
    /// The exit status (a run killed by a signal fails in [`run`] instead).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}--- end ---", self.stderr)
    }
}

impl Outcome {
    /// Asserts the exit status, showing the whole run if it differs.
    #[track_caller]
    pub fn assert_status(&self, want: i32) -> &Self {
        assert_eq!(
            self.status, want,
            "wrong exit status (want {want})\n{self:?}"
        );
        self
    }

    /// Asserts that stdout is exactly `lines`, each followed by a newline.
    #[track_caller]
    pub fn assert_stdout_lines(&self, lines: &[&str]) -> &Self {
        let want: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(self.stdout, want, "stdout differs\n{self:?}");
        self
    }

    /// Asserts that stderr is empty.
    #[track_caller]
    pub fn assert_stderr_empty(&self) -> &Self {
        assert!(self.stderr.is_empty(), "stderr should be empty\n{self:?}");
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}\n{self:?}"
        );
        self
    }

    /// The stderr line that starts with `prefix` (after leading spaces); panics if none.
    #[track_caller]
    pub fn stderr_line(&self, prefix: &str) -> &str {
        self.stderr
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no stderr line starts with {prefix:?}\n{self:?}"))
    }
}

/// Runs the monitor with `args`.
#[track_caller]
pub fn run<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_env(args, std::iter::empty::<(&str, &str)>())
}

/// Runs the monitor with `args` and extra environment variables. `RUST_LOG`,
/// `FLEXOS_KVM_DEVICE` and `FLEXOS_SANDBOX_SELFTEST` from the caller's environment are
/// removed first, so that a developer's shell cannot change what the tests see.
#[track_caller]
pub fn run_env<I, S, E, K, V>(args: I, envs: E) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let (cmd, command) = monitor_command(args, envs);
    sandbox_kept(run_with_timeout(cmd, command, TIMEOUT, None))
}

/// `out`, a monitor run, after checking that no thread of it made a call its sandbox
/// forbids (unless the run asked for one, with `FLEXOS_SANDBOX_SELFTEST`): every test
/// is then also a test of the seccomp filters, whatever it asserts itself.
#[track_caller]
pub fn sandbox_kept(out: Outcome) -> Outcome {
    assert!(
        !out.stderr.contains("flexos-vmm: sandbox: thread")
            || out.command.contains("FLEXOS_SANDBOX_SELFTEST="),
        "a monitor thread made a system call outside its seccomp filter\n{out:?}"
    );
    out
}

/// Runs the monitor with `args` like [`run`], and also sends every line it prints (on
/// stdout or stderr) to `lines` as it appears, so that a test can wait for an event
/// ("waiting for gdb", the guest's first line) with [`wait_for_line`] instead of
/// sleeping.
#[track_caller]
pub fn run_watching<I, S>(args: I, lines: Sender<String>) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (cmd, command) = monitor_command(args, std::iter::empty::<(&str, &str)>());
    sandbox_kept(run_with_timeout(cmd, command, TIMEOUT, Some(lines)))
}

/// Waits up to [`TIMEOUT`] for a line from [`run_watching`] that contains `needle` and
/// returns it; panics with every line seen so far if none comes.
#[track_caller]
pub fn wait_for_line(lines: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push_str(&line),
            Err(e) => panic!(
                "no line containing {needle:?} within {TIMEOUT:?} ({e}); lines so far:\n{seen}"
            ),
        }
    }
}

/// The monitor's command line with a clean environment: `RUST_LOG` and
/// `FLEXOS_KVM_DEVICE` from the caller's environment are removed, then `envs` added.
fn monitor_command<I, S, E, K, V>(args: I, envs: E) -> (Command, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let (mut cmd, _) = monitor_command_in(None, args);
    cmd.envs(envs);
    let command = describe(&cmd);
    (cmd, command)
}

/// The monitor's command line with a clean environment (`RUST_LOG`, `FLEXOS_KVM_DEVICE`
/// and `FLEXOS_SANDBOX_SELFTEST` removed), run inside network namespace `netns` if given.
#[track_caller]
fn monitor_command_in<I, S>(netns: Option<&flexos_netns::NetNs>, args: I) -> (Command, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    require_kvm();
    let vmm = vmm_path();
    let mut cmd = match netns {
        Some(ns) => ns.command(&vmm).unwrap_or_else(|e| panic!("{e}")),
        None => Command::new(&vmm),
    };
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("FLEXOS_KVM_DEVICE")
        .env_remove("FLEXOS_SANDBOX_SELFTEST")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = describe(&cmd);
    (cmd, command)
}

/// Boots `hello` with the given guest arguments (after `--`).
#[track_caller]
pub fn hello<I, S>(guest_args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut args = vec![image("hello").into_os_string(), "--".into()];
    args.extend(guest_args.into_iter().map(|a| a.as_ref().to_os_string()));
    run(args)
}

/// Stock gdb in batch mode with `elf`'s symbols, connected to the monitor's stub at
/// `target` (`target remote`), running each of `commands` in turn.
#[track_caller]
pub fn gdb_remote(elf: &Path, target: &Path, commands: &[&str]) -> Outcome {
    require_tool("gdb", "gdb");
    let mut args: Vec<String> = ["-batch", "-nx", "-ex", "set pagination off"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push("-ex".into());
    args.push(format!("file {}", elf.display()));
    args.push("-ex".into());
    args.push(format!("target remote {}", target.display()));
    for c in commands {
        args.push("-ex".into());
        args.push(c.to_string());
    }
    run_program("gdb", args)
}

/// Runs another program (a stock client such as gdb) with the same timeout and output
/// capture as the monitor.
#[track_caller]
pub fn run_program<I, S>(program: &str, args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_program_for(program, args, TIMEOUT)
}

/// [`run_program`] with a longer deadline, for programs that run many monitors (an
/// exploration).
#[track_caller]
pub fn run_program_for<I, S>(program: &str, args: I, timeout: Duration) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = describe(&cmd);
    run_with_timeout(cmd, command, timeout, None)
}

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status).
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Fails the test, naming the package to install, when `tool` is not on PATH.
#[track_caller]
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: install the `{package}` package (scripts/setup does)"
    );
}

/// A shell-like rendering of `cmd` for messages; long arguments are shortened.
fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.len() > 80 {
            parts.push(format!("<{} bytes>", arg.len()));
        } else {
            parts.push(arg.into_owned());
        }
    }
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    if envs.is_empty() {
        parts.join(" ")
    } else {
        format!("{} {}", envs.join(" "), parts.join(" "))
    }
}

#[track_caller]
fn run_with_timeout(
    mut cmd: Command,
    command: String,
    timeout: Duration,
    lines: Option<Sender<String>>,
) -> Outcome {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    // Each pipe is read line by line, so a watcher sees a line as soon as it is printed.
    let drain = |pipe: Option<Box<dyn Read + Send>>, lines: Option<Sender<String>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let mut reader = BufReader::new(pipe);
                loop {
                    let start = buf.len();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if let Some(tx) = &lines {
                        let _ = tx.send(String::from_utf8_lossy(&buf[start..]).into_owned());
                    }
                }
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _), lines.clone());
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _), lines);

    // The child is waited for on a thread of its own, so that its exit is an event the
    // deadline races against (no polling); on the deadline it is killed by pid.
    let pid = child.id();
    let (exited_tx, exited) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = exited_tx.send(());
        status
    });
    if exited.recv_timeout(timeout).is_err() {
        let pid = libc::pid_t::try_from(pid).expect("pids fit pid_t");
        // SAFETY: kill(2) takes plain integers and touches none of our memory. `pid` is
        // our child, reaped only by the waiter, which has not reported its exit.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = waiter.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        panic!(
            "`{command}` did not finish within {timeout:?}; killed it\n\
             --- stdout ---\n{}--- stderr ---\n{}--- end ---",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
    let status = waiter
        .join()
        .expect("the waiter thread panicked")
        .unwrap_or_else(|e| panic!("waiting for `{command}` failed: {e}"));
    let stdout = String::from_utf8_lossy(&out.join().expect("stdout reader panicked")).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader panicked")).into_owned();
    let Some(code) = status.code() else {
        panic!(
            "`{command}` was killed by a signal ({status}); the monitor must always exit \
             with a status\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}--- end ---"
        );
    };
    Outcome {
        command,
        status: code,
        stdout,
        stderr,
    }
}

/// A scratch directory under the system temp dir, unique per process and call, removed
/// (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/flexos-e2e-<pid>-<n>-<tag>`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("flexos-e2e-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to `<dir>/<name>` and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh FAT image of `mib` MiB in `dir`, made by scripts/mkdisk (stock mkfs.fat).
#[track_caller]
pub fn mkdisk(dir: &TempDir, mib: u32) -> PathBuf {
    require_tool("mkfs.fat", "dosfstools");
    let img = dir.path().join("disk.img");
    let script = repo_root().join("scripts/mkdisk");
    run_program(
        script.to_str().expect("UTF-8 repo path"),
        [img.as_os_str(), std::ffi::OsStr::new(&mib.to_string())],
    )
    .assert_status(0);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "did not finish within")]
    fn a_hanging_child_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30").stdout(Stdio::piped()).stderr(Stdio::piped());
        run_with_timeout(cmd, "sleep 30".into(), Duration::from_millis(100), None);
    }

    #[test]
    fn exit_status_and_output_are_collected() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = run_with_timeout(cmd, "sh".into(), TIMEOUT, None);
        assert_eq!(
            (out.status, &*out.stdout, &*out.stderr),
            (3, "out\n", "err\n")
        );
    }

    #[test]
    fn a_watcher_sees_every_line_of_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; echo three"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (tx, rx) = std::sync::mpsc::channel();
        let out = run_with_timeout(cmd, "sh".into(), TIMEOUT, Some(tx));
        assert_eq!(out.stdout, "one\nthree\n");
        // The two streams are read by two threads: only each stream's own order holds.
        let mut all: Vec<String> = rx.iter().collect();
        let stdout_order: Vec<&String> = all.iter().filter(|l| *l != "two\n").collect();
        assert_eq!(stdout_order, ["one\n", "three\n"], "{all:?}");
        all.sort();
        assert_eq!(all, ["one\n", "three\n", "two\n"]);
    }

    #[test]
    fn temp_dirs_are_unique_and_removed() {
        let a = TempDir::new("t");
        let b = TempDir::new("t");
        assert_ne!(a.path(), b.path());
        let p = a.write("f", b"x");
        assert!(p.is_file());
        let dir = a.path().to_path_buf();
        drop(a);
        assert!(!dir.exists());
    }
}
