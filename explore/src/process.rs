//! Child processes of an exploration (the monitor, stock clients): their output read
//! line by line as it comes, a deadline, and SIGINT/SIGTERM honoured while waiting, so
//! an interrupted exploration kills what it started and cleans up instead of leaving a
//! monitor or a namespace behind.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The signal that asked the exploration to stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to a flag the waits below check.
pub fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialised (zeroed, then the handler set) before
        // the kernel reads it.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The signal that asked to stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Why waiting on a child ended early.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("stopped by signal {0}")]
    Stopped(i32),
    #[error("{what} did not {goal} within {secs} s")]
    Timeout {
        what: String,
        goal: String,
        secs: u64,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
}

/// A running child whose stdout and stderr lines arrive on a channel.
pub struct Running {
    what: String,
    child: Child,
    lines: Receiver<(bool, String)>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// What a finished child printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// Its output, for an error message: stdout and stderr, the last `tail` lines each.
    pub fn tail(&self, tail: usize) -> String {
        let last = |v: &Vec<String>| v[v.len().saturating_sub(tail)..].join("\n");
        format!(
            "stdout:\n{}\nstderr:\n{}",
            last(&self.stdout),
            last(&self.stderr)
        )
    }
}

fn forward(stream: impl Read + Send + 'static, is_err: bool, tx: mpsc::Sender<(bool, String)>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send((is_err, line)).is_err() {
                break;
            }
        }
    });
}

impl Running {
    /// Starts `cmd` with piped stdout and stderr; `what` names it in errors.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Running, WaitError> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| WaitError::Spawn {
                what: what.into(),
                source,
            })?;
        let (tx, lines) = mpsc::channel();
        forward(child.stdout.take().expect("piped"), false, tx.clone());
        forward(child.stderr.take().expect("piped"), true, tx);
        Ok(Running {
            what: what.into(),
            child,
            lines,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads output until a stdout line contains `needle`; false if the child closed
    /// its output first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<bool, WaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_line(deadline, &format!("print '{needle}'"), timeout)? {
                None => return Ok(false),
                Some((false, line)) if line.contains(needle) => return Ok(true),
                Some(_) => {}
            }
        }
    }

    /// Sends SIGTERM, then [`Self::finish`]es (a server that runs until stopped).
    pub fn terminate(self, timeout: Duration) -> Result<Finished, WaitError> {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which is not reaped before
            // finish() waits for it, so the pid still names that child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        self.finish(timeout)
    }

    /// Reads every line until the child closes its output, then reaps it.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished, WaitError> {
        let deadline = Instant::now() + timeout;
        while self.next_line(deadline, "exit", timeout)?.is_some() {}
        let status = self.child.wait().map_err(|source| WaitError::Spawn {
            what: self.what.clone(),
            source,
        })?;
        Ok(Finished {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        })
    }

    /// The next line (kept in `stdout`/`stderr` too), or None at the end of both
    /// streams. Checks for a stop request every 100 ms.
    fn next_line(
        &mut self,
        deadline: Instant,
        goal: &str,
        timeout: Duration,
    ) -> Result<Option<(bool, String)>, WaitError> {
        loop {
            if let Some(sig) = stop_requested() {
                return Err(WaitError::Stopped(sig));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout {
                    what: self.what.clone(),
                    goal: goal.into(),
                    secs: timeout.as_secs(),
                });
            }
            match self
                .lines
                .recv_timeout((deadline - now).min(Duration::from_millis(100)))
            {
                Ok((is_err, line)) => {
                    if is_err {
                        self.stderr.push(line.clone());
                    } else {
                        self.stdout.push(line.clone());
                    }
                    return Ok(Some((is_err, line)));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }
}

impl Drop for Running {
    /// A child still running when its handle goes (an error, a stop) is killed.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end within `timeout`.
pub fn run(cmd: Command, what: &str, timeout: Duration) -> Result<Finished, WaitError> {
    Running::spawn(cmd, what)?.finish(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn collects_both_streams_and_the_status() {
        let done = run(
            sh("echo out; echo err >&2; exit 3"),
            "sh",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(done.stdout, ["out"]);
        assert_eq!(done.stderr, ["err"]);
        assert_eq!(done.status.code(), Some(3));
    }

    #[test]
    fn waits_for_a_line_then_finishes() {
        let mut r = Running::spawn(sh("echo starting; echo ready now; echo after"), "sh").unwrap();
        assert!(r.wait_for("ready", Duration::from_secs(10)).unwrap());
        let done = r.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(done.stdout, ["starting", "ready now", "after"]);
    }

    #[test]
    fn a_line_that_never_comes_is_reported() {
        let mut r = Running::spawn(sh("echo nothing"), "sh").unwrap();
        assert!(!r.wait_for("ready", Duration::from_secs(10)).unwrap());
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        // `exec` so the pipe's only writer is the process the handle kills.
        let r = Running::spawn(sh("exec sleep 30"), "sleeper").unwrap();
        let started = Instant::now();
        let err = r.finish(Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
        assert!(err.to_string().starts_with("sleeper did not exit within"));
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(
            Command::new("/nonexistent/flexos"),
            "nothing",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("cannot start nothing:"),
            "{err}"
        );
    }
}
