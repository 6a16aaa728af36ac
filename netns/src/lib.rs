//! Network namespaces for the guest's network: the one launcher the end-to-end tests,
//! the benchmarks, `flexos-explore` and `scripts/net-up` use.
//!
//! A [`NetNs`] is a network namespace with its loopback up; it usually holds a tap for
//! the monitor's `--net tap=NAME` (with a vnet header, as the monitor wants) carrying
//! the client's address, and may be joined to a second namespace by a veth pair (a
//! Linux baseline server over the host kernel's stack). Commands run inside it
//! ([`NetNs::command`]) join it with `setns` in the child before `exec`; a thread joins
//! it with [`NetNs::enter`]. Dropping an owned namespace deletes it and every device in
//! it. Names made by [`NetNs::unique`] never collide between processes or threads.
//!
//! Everything lives inside namespaces made here: nothing is routed to or from the
//! host's own namespace.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where `ip netns` keeps the namespaces it names.
pub const NETNS_DIR: &str = "/run/netns";
/// The default namespace of `flexos-netns up` (and `scripts/net-up`).
pub const DEFAULT_NS: &str = "flexos-net";
/// The default tap.
pub const DEFAULT_TAP: &str = "flexos0";
/// The default client address on the tap.
pub const DEFAULT_ADDR: &str = "10.0.0.1/24";
/// The address the guest takes by default (`ip=` guest argument, the images' default).
pub const GUEST_IP: &str = "10.0.0.2";

/// Why a namespace could not be made, used or removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`ip` not found: install iproute2 (scripts/setup does)")]
    NoIp,
    #[error("/dev/net/tun does not exist: load the tun module (modprobe tun)")]
    NoTun,
    #[error("{what}: not permitted (network namespaces need root or CAP_NET_ADMIN)")]
    NoPrivilege { what: String },
    #[error("bad namespace name {0:?}: 1 to 64 of A-Z a-z 0-9 _ . -")]
    BadNsName(String),
    #[error("bad interface name {0:?}: 1 to 15 of A-Z a-z 0-9 _ . -")]
    BadIfName(String),
    #[error("bad address {0:?}: want IPv4/prefix, such as 10.0.0.1/24")]
    BadAddr(String),
    #[error("network namespace {0} already exists (flexos-netns down --ns {0} removes it)")]
    Exists(String),
    #[error("no network namespace {0}")]
    Missing(String),
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run `ip {args}`: {source}")]
    IpSpawn { args: String, source: io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot join network namespace {name}: {source}")]
    Setns { name: String, source: io::Error },
    #[error("interface {dev} in {ns}: {what}")]
    Counter {
        ns: String,
        dev: String,
        what: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Checks a namespace name (it becomes a file name under [`NETNS_DIR`]).
pub fn check_ns_name(name: &str) -> Result<()> {
    if (1..=64).contains(&name.len()) && name.bytes().all(name_byte) && !name.starts_with('.') {
        Ok(())
    } else {
        Err(Error::BadNsName(name.to_string()))
    }
}

/// Checks an interface name (the kernel's limit is 15 bytes).
pub fn check_if_name(name: &str) -> Result<()> {
    if (1..=15).contains(&name.len()) && name.bytes().all(name_byte) && !name.starts_with('.') {
        Ok(())
    } else {
        Err(Error::BadIfName(name.to_string()))
    }
}

/// Checks an `A.B.C.D/PREFIX` address.
pub fn check_addr(cidr: &str) -> Result<()> {
    let bad = || Error::BadAddr(cidr.to_string());
    let (ip, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
    match prefix.parse::<u8>() {
        Ok(0..=32) if !prefix.starts_with('+') => Ok(()),
        _ => Err(bad()),
    }
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Fails with [`Error::NoIp`] when `ip` is not on PATH.
pub fn require_ip() -> Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("ip").is_file()));
    if found {
        Ok(())
    } else {
        Err(Error::NoIp)
    }
}

/// Fails with [`Error::NoTun`] when the tun device is missing.
pub fn require_tun() -> Result<()> {
    if Path::new("/dev/net/tun").exists() {
        Ok(())
    } else {
        Err(Error::NoTun)
    }
}

/// Runs `ip ARGS`; a failure says whether a right was missing.
pub fn ip(args: &[&str]) -> Result<()> {
    let shown = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::NoIp,
            _ => Error::IpSpawn {
                args: shown.clone(),
                source,
            },
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(ip_failure(shown, stderr))
}

/// The error for a failed `ip` command, from what it printed.
fn ip_failure(args: String, stderr: String) -> Error {
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        Error::NoPrivilege {
            what: format!("`ip {args}`"),
        }
    } else {
        Error::Ip { args, stderr }
    }
}

/// Whether namespace `name` exists (as `ip netns` names it).
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// A network namespace; deleted, with every device in it, when an owned one drops.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    owned: bool,
}

impl NetNs {
    /// Makes namespace `name` (loopback up); an error if it already exists.
    pub fn create(name: &str) -> Result<NetNs> {
        check_ns_name(name)?;
        require_ip()?;
        if exists(name) {
            return Err(Error::Exists(name.to_string()));
        }
        ip(&["netns", "add", name])?;
        // From here on, dropping `ns` removes what was made if a later step fails.
        let ns = NetNs {
            name: name.to_string(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Makes a namespace whose name no other process or thread uses:
    /// `fx<pid>-<n>-<tag>` (`tag` cut to fit the name's limit).
    pub fn unique(tag: &str) -> Result<NetNs> {
        NetNs::create(&unique_name(tag))
    }

    /// The usual one: a [`NetNs::unique`] namespace holding tap `tap` (with a vnet
    /// header) at `cidr`.
    pub fn with_tap(tag: &str, tap: &str, cidr: &str) -> Result<NetNs> {
        check_if_name(tap)?;
        check_addr(cidr)?;
        require_tun()?;
        let ns = NetNs::unique(tag)?;
        ns.add_tap(tap, cidr, true)?;
        Ok(ns)
    }

    /// An existing namespace by name, not owned: dropping it leaves it in place.
    pub fn open(name: &str) -> Result<NetNs> {
        check_ns_name(name)?;
        if !exists(name) {
            return Err(Error::Missing(name.to_string()));
        }
        Ok(NetNs {
            name: name.to_string(),
            owned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the namespace after this value is gone (`flexos-netns up`).
    pub fn keep(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.name)
    }

    /// Deletes the namespace now, with every device in it.
    pub fn delete(mut self) -> Result<()> {
        self.owned = false;
        ip(&["netns", "delete", &self.name])
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Adds tap `dev` at `cidr` (with a vnet header if `vnet_hdr`) and brings it up.
    pub fn add_tap(&self, dev: &str, cidr: &str, vnet_hdr: bool) -> Result<()> {
        check_if_name(dev)?;
        check_addr(cidr)?;
        require_tun()?;
        let mut args = vec!["tuntap", "add", "dev", dev, "mode", "tap"];
        if vnet_hdr {
            args.push("vnet_hdr");
        }
        self.ip(&args)?;
        self.up(dev, cidr)
    }

    /// A veth pair: `dev` here at `cidr`, `peer_dev` in `peer` at `peer_cidr`, both up.
    pub fn add_veth(
        &self,
        dev: &str,
        cidr: &str,
        peer: &NetNs,
        peer_dev: &str,
        peer_cidr: &str,
    ) -> Result<()> {
        check_if_name(dev)?;
        check_if_name(peer_dev)?;
        check_addr(cidr)?;
        check_addr(peer_cidr)?;
        self.ip(&[
            "link", "add", dev, "type", "veth", "peer", peer_dev, "netns", &peer.name,
        ])?;
        self.up(dev, cidr)?;
        peer.up(peer_dev, peer_cidr)
    }

    fn up(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev])?;
        self.ip(&["link", "set", dev, "up"])
    }

    fn file(&self) -> Result<File> {
        let path = Path::new(NETNS_DIR).join(&self.name);
        File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::Missing(self.name.clone()),
            _ => Error::Open { path, source },
        })
    }

    /// A command running `program` inside the namespace: the child joins it with
    /// `setns` before `exec` (so a kill of the child reaches the program itself) and,
    /// like `ip netns exec`, sees the namespace's own `/sys/class/net`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Result<Command> {
        let mut cmd = Command::new(program);
        self.join_in_child(&mut cmd)?;
        Ok(cmd)
    }

    /// Makes `cmd`'s child join the namespace before it runs its program: `setns`,
    /// then a mount namespace of its own (propagating nothing back) where `/sys` is
    /// a sysfs mounted inside the network namespace, as `ip netns exec` does.
    pub fn join_in_child(&self, cmd: &mut Command) -> Result<()> {
        let fd: OwnedFd = self.file()?.into();
        // Made before the fork: the child only makes system calls.
        let root = c"/";
        let sys = c"/sys";
        let sysfs = c"sysfs";
        let none = c"none";
        // SAFETY: the closure runs in the forked child before exec and calls only
        // setns, unshare, mount and umount2, which are async-signal-safe system calls;
        // every pointer is to a C string literal, and `fd` is owned by the closure and
        // stays open for as long as the command exists.
        unsafe {
            cmd.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                };
                check(libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET))?;
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    none.as_ptr(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                // The host's sysfs shows the host's interfaces; not mounted is fine.
                libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
                check(libc::mount(
                    sysfs.as_ptr(),
                    sys.as_ptr(),
                    sysfs.as_ptr(),
                    0,
                    std::ptr::null(),
                ))
            });
        }
        Ok(())
    }

    /// Runs `f` on a thread of its own that has joined the namespace and returns what
    /// it returns. Sockets `f` opens belong to the namespace for good and may be used
    /// from any thread afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let ns = self.file()?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns changes only this thread's network namespace; `ns`
                    // is an open namespace file that outlives the call.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        let source = io::Error::last_os_error();
                        return Err(match source.raw_os_error() {
                            Some(libc::EPERM) => Error::NoPrivilege {
                                what: format!("setns into {}", self.name),
                            },
                            _ => Error::Setns {
                                name: self.name.clone(),
                                source,
                            },
                        });
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Counter `name` of interface `dev` (a name of `/sys/class/net/DEV/statistics/`,
    /// such as `tx_dropped`), read through netlink (`ip -s -j link`): this process's
    /// sysfs is the host's.
    pub fn link_counter(&self, dev: &str, name: &str) -> Result<u64> {
        let fail = |what: String| Error::Counter {
            ns: self.name.clone(),
            dev: dev.to_string(),
            what,
        };
        let args = ["-n", &self.name, "-s", "-j", "link", "show", "dev", dev];
        let out = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::IpSpawn {
                args: args.join(" "),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(ip_failure(args.join(" "), stderr));
        }
        counter(&String::from_utf8_lossy(&out.stdout), name).map_err(fail)
    }
}

/// Counter `name` (`rx_packets`, `tx_dropped`, ...) from `ip -s -j link show`'s JSON.
fn counter(json: &str, name: &str) -> std::result::Result<u64, String> {
    let (dir, field) = name
        .split_once('_')
        .filter(|(d, _)| matches!(*d, "rx" | "tx"))
        .ok_or_else(|| format!("unknown counter {name} (want rx_* or tx_*)"))?;
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable `ip -j` output: {e}"))?;
    v.get(0)
        .and_then(|link| link.get("stats64"))
        .and_then(|s| s.get(dir))
        .and_then(|s| s.get(field))
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("no counter {name} in `ip -s -j link` output"))
}

/// `fx<pid>-<n>-<tag>`, at most 64 bytes; `tag` keeps only name characters.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("fx{}-{n}", std::process::id());
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii() && name_byte(*c as u8))
        .collect();
    if !tag.is_empty() {
        name.push('-');
        name.push_str(&tag);
    }
    name.truncate(64);
    name
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.owned {
            // Deleting the namespace destroys its taps and veths.
            let _ = ip(&["netns", "delete", &self.name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ips_limits() {
        check_ns_name("flexos-net").unwrap();
        check_ns_name(&"a".repeat(64)).unwrap();
        for bad in ["", "a/b", "a b", "..", ".x", &"a".repeat(65)] {
            let err = check_ns_name(bad).unwrap_err();
            assert!(matches!(err, Error::BadNsName(_)), "{bad}: {err}");
        }
        check_if_name("flexos0").unwrap();
        let err = check_if_name("sixteen-chars-xx").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad interface name \"sixteen-chars-xx\": 1 to 15 of A-Z a-z 0-9 _ . -"
        );
    }

    #[test]
    fn addresses_need_a_prefix() {
        check_addr("10.0.0.1/24").unwrap();
        check_addr("192.168.1.1/32").unwrap();
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0/24",
            "x/24",
            "10.0.0.1/+8",
        ] {
            assert!(matches!(check_addr(bad), Err(Error::BadAddr(_))), "{bad}");
        }
    }

    #[test]
    fn unique_names_differ_and_fit() {
        let a = unique_name("tag");
        let b = unique_name("tag");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("fx{}-", std::process::id())), "{a}");
        check_ns_name(&a).unwrap();
        let long = unique_name(&"x/y ".repeat(40));
        assert!(long.len() <= 64);
        check_ns_name(&long).unwrap();
        check_ns_name(&unique_name("")).unwrap();
    }

    #[test]
    fn a_refusal_names_the_missing_right() {
        let e = ip_failure(
            "netns add x".into(),
            "mount --make-shared /run/netns failed: Operation not permitted".into(),
        );
        assert_eq!(
            e.to_string(),
            "`ip netns add x`: not permitted (network namespaces need root or CAP_NET_ADMIN)"
        );
        let e = ip_failure(
            "-n fxtest link set fxt9 up".into(),
            "Cannot find device".into(),
        );
        assert_eq!(
            e.to_string(),
            "`ip -n fxtest link set fxt9 up` failed: Cannot find device"
        );
    }

    #[test]
    fn reads_counters_from_ips_json() {
        let json = r#"[{"ifname":"fxt0","stats64":{"rx":{"bytes":10,"packets":2,"dropped":0},"tx":{"bytes":5,"packets":1,"dropped":7}}}]"#;
        assert_eq!(counter(json, "tx_dropped"), Ok(7));
        assert_eq!(counter(json, "rx_packets"), Ok(2));
        assert!(counter(json, "tx_nosuch")
            .unwrap_err()
            .contains("no counter"));
        assert!(counter(json, "dropped")
            .unwrap_err()
            .contains("unknown counter"));
    }

    #[test]
    fn a_missing_namespace_is_named() {
        let err = NetNs::open("fx-no-such-namespace").unwrap_err();
        assert_eq!(err.to_string(), "no network namespace fx-no-such-namespace");
        assert!(matches!(NetNs::open("bad/name"), Err(Error::BadNsName(_))));
    }
}
