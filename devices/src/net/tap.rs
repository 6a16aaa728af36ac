//! An existing Linux tap interface as the device's backend: opened with
//! IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, a 12-byte vnet header (virtio_net_hdr_v1, so a
//! frame moves between tap and guest buffers with its header in one readv/writev) and
//! non-blocking.
//!
//! The monitor never creates an interface: a name that does not exist in this network
//! namespace is an error ([`TapError::Missing`]) rather than a new, unconfigured tap,
//! because TUNSETIFF on an unknown name would create one silently. The interface's
//! index is checked before and after TUNSETIFF, so one deleted or replaced in between
//! is refused too.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::backend::Backend;
use super::VNET_HDR_LEN;

/// The longest interface name Linux accepts (IFNAMSIZ less the NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Why a tap cannot be opened. The monitor maps [`TapError::Missing`] to exit 66,
/// [`TapError::Busy`], [`TapError::Permission`] and [`TapError::Other`] to 71, the
/// naming errors to 64.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {name:?} is not an interface name: {why}")]
    BadName { name: String, why: &'static str },
    #[error("no tap device {name} in this network namespace")]
    Missing { name: String },
    #[error("{name} is not a tap device")]
    NotATap { name: String },
    #[error("tap device {name} is busy (another process has it open)")]
    Busy { name: String },
    #[error("no permission to open tap device {name}: {source}")]
    Permission {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("tap device {name}: {what}: {source}")]
    Other {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Checks `name` the way the kernel does (dev_valid_name), so a bad name is reported as
/// such instead of as a missing interface.
pub fn check_name(name: &str) -> Result<(), TapError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are reserved")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("it holds `/`, `:`, a NUL or white space")
    } else {
        None
    };
    match why {
        Some(why) => Err(TapError::BadName {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// An open tap queue.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens the existing tap interface `name` (see the module docs).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        check_name(name)?;
        let c_name = CString::new(name).map_err(|_| TapError::BadName {
            name: name.to_owned(),
            why: "it holds a NUL",
        })?;
        // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(TapError::Missing {
                name: name.to_owned(),
            });
        }
        let other = |what| {
            move |source| TapError::Other {
                name: name.to_owned(),
                what,
                source,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => TapError::Permission {
                    name: name.to_owned(),
                    source,
                },
                _ => other("cannot open /dev/net/tun")(source),
            })?;

        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = src as libc::c_char;
        }
        // Fits a c_short: 0x0002 | 0x1000 | 0x4000.
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is, for the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EBUSY) => TapError::Busy {
                    name: name.to_owned(),
                },
                Some(libc::EPERM | libc::EACCES) => TapError::Permission {
                    name: name.to_owned(),
                    source,
                },
                // The name is an interface, but not a tap (a tun, a veth, lo...).
                Some(libc::EINVAL) => TapError::NotATap {
                    name: name.to_owned(),
                },
                _ => other("TUNSETIFF")(source),
            });
        }
        // TUNSETIFF on a name that no longer exists creates a new tap: if the interface
        // went away (or was replaced) after the check above, it is not the one asked
        // for. The new, non-persistent tap goes with `file` when this returns.
        // SAFETY: as above.
        if unsafe { libc::if_nametoindex(c_name.as_ptr()) } != index {
            return Err(TapError::Missing {
                name: name.to_owned(),
            });
        }
        let tap = Tap {
            file,
            name: name.to_owned(),
        };
        let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer, valid for the call.
        if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
            return Err(other("TUNSETVNETHDRSZ")(io::Error::last_os_error()));
        }
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Backend for Tap {
    /// TUNSETOFFLOAD: the kernel may then hand us frames with a partial checksum
    /// (NEEDS_CSUM) and, with TSO4, TCP segments of up to 64 KiB.
    fn set_offload(&self, csum: bool, tso4: bool) -> io::Result<()> {
        let mut flags: libc::c_uint = 0;
        if csum {
            flags |= libc::TUN_F_CSUM;
            // Segmentation offload needs checksum offload (virtio 5.1.3.1 too).
            if tso4 {
                flags |= libc::TUN_F_TSO4;
            }
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is touched.
        if unsafe {
            libc::ioctl(
                self.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                flags as libc::c_ulong,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_lookup() {
        for (name, why) in [
            ("", "empty"),
            ("sixteen-bytes-xx", "longer than 15"),
            ("..", "reserved"),
            ("a/b", "`/`"),
            ("a b", "white space"),
            ("a:1", "`:`"),
        ] {
            let e = Tap::open(name).unwrap_err();
            assert!(matches!(e, TapError::BadName { .. }), "{name:?}: {e}");
            assert!(e.to_string().contains(why), "{name:?}: {e}");
        }
        assert!(check_name("fifteen-bytes-x").is_ok());
    }

    #[test]
    fn a_missing_tap_is_not_created() {
        // A name no interface of this namespace has: looked up, never created.
        let name = "flxnotap9";
        let e = Tap::open(name).unwrap_err();
        assert!(matches!(e, TapError::Missing { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "no tap device flxnotap9 in this network namespace"
        );
        let c = CString::new(name).unwrap();
        // SAFETY: a valid NUL-terminated string.
        assert_eq!(unsafe { libc::if_nametoindex(c.as_ptr()) }, 0);
    }
}
