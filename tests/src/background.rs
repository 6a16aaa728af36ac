//! A program run in the background, to be signalled mid-run: the test waits for a line
//! that says the moment has come (an event, not a sleep), then sends the signal.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::{repo_root, require_kvm, vmm_path, TIMEOUT};

/// A monitor run in the background, to be signalled mid-run. Dropped before it ended
/// (a test that failed half-way), it is killed: no monitor outlives its test.
pub struct Background {
    child: Option<Child>,
    /// Lines of the stream being watched, as they arrive.
    lines: mpsc::Receiver<String>,
    /// The other stream, collected to its end.
    rest: Option<thread::JoinHandle<String>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Background {
    /// Starts the monitor with `args`; `watch_stderr` picks the stream to watch.
    pub fn start(args: &[&str], watch_stderr: bool) -> Background {
        require_kvm();
        Self::start_program(&vmm_path(), args, watch_stderr)
    }

    /// [`Background::start`] with environment variables `envs` (e.g. RUST_LOG).
    pub fn start_env(args: &[&str], watch_stderr: bool, envs: &[(&str, &str)]) -> Background {
        require_kvm();
        Self::spawn(&vmm_path(), args, watch_stderr, envs)
    }

    /// Starts `program` (a binary this repository built) with `args`.
    pub fn start_program(program: &Path, args: &[&str], watch_stderr: bool) -> Background {
        Self::spawn(program, args, watch_stderr, &[])
    }

    /// Starts the monitor with `args` inside network namespace `ns` (a guest server the
    /// test's clients reach through the namespace's tap).
    pub fn start_in(ns: &flexos_netns::NetNs, args: &[&str], watch_stderr: bool) -> Background {
        require_kvm();
        let cmd = ns.command(vmm_path()).unwrap_or_else(|e| panic!("{e}"));
        Self::spawn_command(cmd, args, watch_stderr, &[])
    }

    fn spawn(
        program: &Path,
        args: &[&str],
        watch_stderr: bool,
        envs: &[(&str, &str)],
    ) -> Background {
        Self::spawn_command(Command::new(program), args, watch_stderr, envs)
    }

    fn spawn_command(
        mut cmd: Command,
        args: &[&str],
        watch_stderr: bool,
        envs: &[(&str, &str)],
    ) -> Background {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .args(args)
            .current_dir(repo_root())
            .env_remove("RUST_LOG")
            .env_remove("FLEXOS_SANDBOX_SELFTEST")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        let (watched, other) = if watch_stderr { (err, out) } else { (out, err) };
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(watched).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let rest = thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(other).read_to_string(&mut text);
            text
        });
        Background {
            child: Some(child),
            lines,
            rest: Some(rest),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until the watched stream prints `want`; panics if it ends first.
    pub fn wait_for(&self, want: &str) {
        self.wait_until(|line| line == want, want);
    }

    /// Waits for a line that satisfies `ok` (described by `what`).
    pub fn wait_until(&self, ok: impl Fn(&str) -> bool, what: &str) {
        loop {
            match self.lines.recv_timeout(TIMEOUT) {
                Ok(line) if ok(&line) => return,
                Ok(_) => {}
                Err(e) => panic!("no line {what:?} from the program: {e}"),
            }
        }
    }

    /// Sends `signal` (a `kill` name) and returns the exit status, the rest of the
    /// watched stream and the other stream.
    pub fn signal(self, signal: &str) -> (i32, Vec<String>, String) {
        let pid = self.pid().to_string();
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("cannot run kill");
        assert!(kill.success());
        self.finish(&format!("after SIG{signal}"))
    }

    /// Waits for the program to end by itself (within the usual timeout); returns the
    /// exit status, the rest of the watched stream and the other stream.
    pub fn wait(self) -> (i32, Vec<String>, String) {
        self.finish("by itself")
    }

    fn finish(mut self, how: &str) -> (i32, Vec<String>, String) {
        let (tx, rx) = mpsc::channel();
        let mut child = self.child.take().expect("the child is waited for once");
        let pid = child.id();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(TIMEOUT) {
            Ok(status) => status.expect("wait failed"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("the program did not end {how}; killed it")
            }
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let other = self
            .rest
            .take()
            .expect("the other stream is read once")
            .join()
            .unwrap();
        let code = status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal instead of exiting: {status}"));
        // As `sandbox_kept` checks for the other runs (the lines waited for are gone).
        let report = "flexos-vmm: sandbox: thread";
        assert!(
            !other.contains(report) && !rest.iter().any(|l| l.contains(report)),
            "a monitor thread made a system call outside its seccomp filter: {rest:?}\n{other}"
        );
        (code, rest, other)
    }
}
