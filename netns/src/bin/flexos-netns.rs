//! `flexos-netns`: a network namespace with a tap for the monitor's `--net`, around one
//! command (`run`) or kept until `down` (`up`). See `flexos-netns --help`.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use flexos_netns::{NetNs, DEFAULT_ADDR, DEFAULT_NS, DEFAULT_TAP, GUEST_IP};

const HELP: &str = "\
flexos-netns: a network namespace holding a tap (with a vnet header) at the client's
address, for `flexos-vmm --net tap=NAME`. Nothing is routed to or from the host's own
namespace: it has only its loopback and the tap.

usage:
  flexos-netns run [--ns NAME] [--tap NAME] [--addr CIDR] -- CMD [ARGS...]
      makes the namespace, runs CMD inside it (environment: FLEXOS_NETNS=NAME,
      FLEXOS_TAP=TAP), removes the namespace when CMD ends, and exits with CMD's
      status (128+N if a signal N ended it). SIGINT and SIGTERM are passed on to CMD
      (SIGKILL 5 s later if it is still there); the namespace goes in every case.
      Default namespace: fx<pid>-0-run, unique to this run.
  flexos-netns up [--ns NAME] [--tap NAME] [--addr CIDR]
      makes the namespace and leaves it (scripts/net-up)
  flexos-netns down [--ns NAME]
      removes a namespace and its tap (scripts/net-down)

defaults: --ns flexos-net (up, down), --tap flexos0, --addr 10.0.0.1/24; the guest
takes 10.0.0.2 (its `ip=` argument).

example:
  flexos-netns run -- sh -c 'target/release/flexos-vmm -c 2 --net tap=flexos0 \\
      target/images/iperf.elf -- count=1 & sleep 1; iperf -c 10.0.0.2; wait'

exit status: CMD's (run); 0 done; 64 usage error; 71 the namespace could not be made
or removed (no `ip`, no /dev/net/tun, not root, it exists or does not); 126/127 CMD
could not be run / was not found.
";

const EXIT_USAGE: i32 = 64;
const EXIT_OSERR: i32 = 71;

struct Opts {
    ns: Option<String>,
    tap: String,
    addr: String,
    cmd: Vec<OsString>,
}

fn parse(args: &[OsString], takes_cmd: bool, takes_tap: bool) -> Result<Opts, String> {
    let mut opts = Opts {
        ns: None,
        tap: DEFAULT_TAP.into(),
        addr: DEFAULT_ADDR.into(),
        cmd: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy();
        let mut value = |flag: &str| -> Result<String, String> {
            it.next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match arg.as_ref() {
            "--ns" => opts.ns = Some(value("--ns")?),
            "--tap" if takes_tap => opts.tap = value("--tap")?,
            "--addr" if takes_tap => opts.addr = value("--addr")?,
            "--" if takes_cmd => {
                opts.cmd = it.by_ref().cloned().collect();
                break;
            }
            other => return Err(format!("unexpected argument '{other}' (see --help)")),
        }
    }
    if takes_cmd && opts.cmd.is_empty() {
        return Err("run needs a command after `--` (see --help)".into());
    }
    Ok(opts)
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .as_deref()
    {
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            0
        }
        Some("run") => with_opts(&args[1..], true, true, run),
        Some("up") => with_opts(&args[1..], false, true, up),
        Some("down") => with_opts(&args[1..], false, false, down),
        Some(other) => usage(&format!("unknown command '{other}' (run, up or down)")),
        None => usage("which command? run, up or down"),
    };
    std::process::exit(code);
}

fn usage(msg: &str) -> i32 {
    eprintln!("flexos-netns: error: {msg}");
    EXIT_USAGE
}

fn with_opts(
    args: &[OsString],
    takes_cmd: bool,
    takes_tap: bool,
    f: fn(Opts) -> Result<i32, flexos_netns::Error>,
) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") && !args.iter().any(|a| a == "--") {
        print!("{HELP}");
        return 0;
    }
    match parse(args, takes_cmd, takes_tap) {
        Err(msg) => usage(&msg),
        Ok(opts) => f(opts).unwrap_or_else(|e| {
            eprintln!("flexos-netns: error: {e}");
            match e {
                flexos_netns::Error::BadNsName(_)
                | flexos_netns::Error::BadIfName(_)
                | flexos_netns::Error::BadAddr(_) => EXIT_USAGE,
                _ => EXIT_OSERR,
            }
        }),
    }
}

fn make(opts: &Opts, name: &str) -> Result<NetNs, flexos_netns::Error> {
    flexos_netns::check_ns_name(name)?;
    flexos_netns::check_if_name(&opts.tap)?;
    flexos_netns::check_addr(&opts.addr)?;
    flexos_netns::require_ip()?;
    flexos_netns::require_tun()?;
    let ns = NetNs::create(name)?;
    ns.add_tap(&opts.tap, &opts.addr, true)?;
    Ok(ns)
}

fn up(opts: Opts) -> Result<i32, flexos_netns::Error> {
    let name = opts.ns.clone().unwrap_or_else(|| DEFAULT_NS.into());
    let ns = make(&opts, &name)?;
    let name = ns.keep();
    eprintln!(
        "flexos-netns: namespace {name}: tap {} with {} (the guest takes {GUEST_IP}; \
         flexos-netns down --ns {name} removes it)",
        opts.tap, opts.addr
    );
    Ok(0)
}

fn down(opts: Opts) -> Result<i32, flexos_netns::Error> {
    let name = opts.ns.unwrap_or_else(|| DEFAULT_NS.into());
    NetNs::open(&name)?.delete()?;
    eprintln!("flexos-netns: removed namespace {name}");
    Ok(0)
}

/// The signals `run` waits for (blocked, then taken with sigtimedwait).
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn run(opts: Opts) -> Result<i32, flexos_netns::Error> {
    // Block the signals before the namespace exists: one that arrives during set-up is
    // taken below, after the namespace is in place, and still removes it.
    let set = signal_set();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let name = opts
        .ns
        .clone()
        .unwrap_or_else(|| flexos_netns::unique_name("run"));
    let ns = make(&opts, &name)?;
    let mut cmd = Command::new(&opts.cmd[0]);
    cmd.args(&opts.cmd[1..])
        .env("FLEXOS_NETNS", ns.name())
        .env("FLEXOS_TAP", &opts.tap);
    ns.join_in_child(&mut cmd)?;
    // SAFETY: runs in the forked child before exec and only unblocks signals
    // (pthread_sigmask is async-signal-safe), so CMD starts with the usual mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "flexos-netns: error: cannot run {}: {e}",
                opts.cmd[0].to_string_lossy()
            );
            drop(ns);
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let status = wait_passing_signals(child, &set);
    ns.delete()?;
    Ok(match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("flexos-netns: error: waiting for the command: {e}");
            EXIT_OSERR
        }
    })
}

/// Waits for `child`, passing SIGINT and SIGTERM on to it; SIGKILL 5 s after the first
/// if it is still running.
fn wait_passing_signals(mut child: Child, set: &libc::sigset_t) -> std::io::Result<ExitStatus> {
    let mut kill_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            child.kill()?;
        }
        // A bounded wait: SIGCHLD wakes it at once; the bound only re-checks the
        // SIGKILL deadline.
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: `set` is an initialised sigset_t, `timeout` a valid timespec, and
        // no siginfo is asked for.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        if sig == libc::SIGINT || sig == libc::SIGTERM {
            let pid = libc::pid_t::try_from(child.id()).unwrap_or(libc::pid_t::MAX);
            // SAFETY: kill takes plain integers; `pid` is our child, not yet reaped.
            unsafe { libc::kill(pid, sig) };
            kill_at.get_or_insert(Instant::now() + Duration::from_secs(5));
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_OSERR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_takes_the_command_after_the_separator() {
        let o = parse(
            &os(&["--ns", "n1", "--tap", "t1", "--", "sh", "-c", "--ns"]),
            true,
            true,
        )
        .unwrap();
        assert_eq!(o.ns.as_deref(), Some("n1"));
        assert_eq!(o.tap, "t1");
        assert_eq!(o.addr, DEFAULT_ADDR);
        assert_eq!(o.cmd, os(&["sh", "-c", "--ns"]));
    }

    #[test]
    fn bad_command_lines_are_named() {
        assert_eq!(
            parse(&os(&["--ns", "x"]), true, true).err().unwrap(),
            "run needs a command after `--` (see --help)"
        );
        assert_eq!(
            parse(&os(&["--ns"]), false, true).err().unwrap(),
            "--ns needs a value"
        );
        assert_eq!(
            parse(&os(&["--tap", "t"]), false, false).err().unwrap(),
            "unexpected argument '--tap' (see --help)"
        );
    }

    #[test]
    fn signals_become_128_plus_their_number() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }
}
