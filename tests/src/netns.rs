//! Network namespaces for the network tests: each test makes its own, with a tap for
//! the guest's device and the client's address, and removes it on drop. Every address
//! a test uses lives inside one; nothing is routed to or from the host's namespace.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;

use crate::{monitor_command_in, require_tool, run_with_timeout, sandbox_kept, Outcome, TIMEOUT};

/// The tap's name inside every test namespace (names are per namespace).
pub const TAP: &str = "fxtap0";
/// The client side's address on the tap.
pub const CLIENT_IP: &str = "10.0.0.1";
/// The guest's address (`ip=` guest argument).
pub const GUEST_IP: &str = flexos_netns::GUEST_IP;

/// A namespace holding [`TAP`] (with a vnet header) at [`CLIENT_IP`]/24; deleted, with
/// its tap, on drop. The test-side face of [`flexos_netns::NetNs`]: every failure
/// fails the test with the launcher's message.
pub struct NetNs {
    inner: flexos_netns::NetNs,
}

impl NetNs {
    /// Creates a uniquely named namespace for the calling test. Fails the test, naming
    /// what to install or which right is missing, if it cannot.
    #[track_caller]
    pub fn with_tap(tag: &str) -> NetNs {
        let inner = flexos_netns::NetNs::with_tap(tag, TAP, &format!("{CLIENT_IP}/24"))
            .unwrap_or_else(|e| panic!("cannot make a network namespace: {e}"));
        NetNs { inner }
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The launcher's namespace.
    pub fn inner(&self) -> &flexos_netns::NetNs {
        &self.inner
    }

    /// `ip -n NS ARGS...`, which must succeed.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) {
        self.inner.ip(args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A command running `program` inside the namespace.
    #[track_caller]
    pub fn command<I, S>(&self, program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self
            .inner
            .command(program)
            .unwrap_or_else(|e| panic!("{e}"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `program` (a stock client) inside the namespace with the usual timeout.
    #[track_caller]
    pub fn run_program<I, S>(&self, program: &str, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.command(program, args);
        let command = format!("{program} ... in network namespace {}", self.name());
        run_with_timeout(cmd, command, TIMEOUT, None)
    }

    /// Runs the monitor inside the namespace like [`crate::run_watching`]: every line
    /// it prints also goes to `lines`.
    #[track_caller]
    pub fn run_monitor_watching<I, S>(&self, args: I, lines: Sender<String>) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, command) = monitor_command_in(Some(&self.inner), args);
        sandbox_kept(run_with_timeout(cmd, command, TIMEOUT, Some(lines)))
    }

    /// Runs the monitor inside the namespace and waits for it, like [`crate::run`].
    #[track_caller]
    pub fn run_monitor<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, command) = monitor_command_in(Some(&self.inner), args);
        sandbox_kept(run_with_timeout(cmd, command, TIMEOUT, None))
    }

    /// Runs `f` on a thread of its own that has joined the namespace, and returns what
    /// it returns. Sockets `f` opens (TCP connections to the guest, a [`FrameSocket`]
    /// on the tap) belong to the namespace for good and may be used from any thread
    /// afterwards.
    #[track_caller]
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.inner.enter(f).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Counter `name` of interface `dev` in the namespace (a name of
    /// `/sys/class/net/DEV/statistics/`, such as `tx_dropped`: frames the tap refused
    /// because its reader, the monitor, was behind).
    #[track_caller]
    pub fn link_counter(&self, dev: &str, name: &str) -> u64 {
        require_tool("ip", "iproute2");
        self.inner
            .link_counter(dev, name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A [`FrameSocket`] on the namespace's [`TAP`]: frames sent on it go into the
    /// guest's device, as if another host on the link had sent them.
    #[track_caller]
    pub fn frame_socket(&self) -> FrameSocket {
        self.enter(|| FrameSocket::open(TAP))
            .unwrap_or_else(|e| panic!("cannot open a packet socket on {TAP}: {e}"))
    }
}

/// A raw `AF_PACKET` socket bound to one interface: each `send` puts one whole Ethernet
/// frame on it (hand-built headers, any source address). Receives nothing.
pub struct FrameSocket {
    fd: OwnedFd,
}

impl FrameSocket {
    /// Opens one on interface `ifname` of the calling thread's namespace.
    pub fn open(ifname: &str) -> io::Result<FrameSocket> {
        let name = CString::new(ifname).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: if_nametoindex reads the NUL-terminated name and nothing else.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: a socket that sends only (no frame is queued to it).
        // SAFETY: socket takes plain integers.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain integers; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and the length says so.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FrameSocket { fd })
    }

    /// Sends `frame` (Ethernet header first) out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is readable for its length; send copies it and keeps nothing.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != frame.len() => Err(io::ErrorKind::WriteZero.into()),
            _ => Ok(()),
        }
    }
}

/// Sets SO_LINGER to {on, 0} on `s`, so that dropping it resets the connection (a
/// client killed mid-request or mid-response).
pub fn reset_on_close(s: &std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `struct linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}
