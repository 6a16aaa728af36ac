//! Where GDB connects: a TCP `HOST:PORT` or a Unix socket path, checked and bound
//! before any VM exists so that a bad `--gdb` is a usage error, not a hang.
//!
//! An argument without a `/` that contains a `:` is a `HOST:PORT` and must resolve as
//! one (`./name:x` names a socket file). A socket path never replaces anything but a
//! stale socket: not a regular file, and not the socket of a monitor still listening.

use std::io::ErrorKind;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use gdbstub::conn::ConnectionExt;

use super::DebugError;

/// A connection to GDB.
pub type Conn = Box<dyn ConnectionExt<Error = std::io::Error>>;

/// A bound, listening `--gdb` address.
pub enum GdbListener {
    Tcp {
        listener: TcpListener,
        addr: String,
    },
    Unix {
        listener: UnixListener,
        file: SocketFile,
    },
}

/// The socket file a listener created; dropping it removes the file if it is still
/// that socket (device and inode match), never anything that replaced it.
#[derive(Clone, Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl GdbListener {
    /// Checks `addr` and starts listening on it.
    pub fn bind(addr: &str) -> Result<GdbListener, DebugError> {
        if addr.is_empty() {
            return Err(DebugError::EmptyAddress);
        }
        if !addr.contains('/') && addr.contains(':') {
            let listen = |source| DebugError::Listen {
                addr: addr.to_string(),
                source,
            };
            let bad = |reason: String| DebugError::BadAddress {
                addr: addr.to_string(),
                reason,
            };
            let sock = addr
                .to_socket_addrs()
                .map_err(|e| bad(e.to_string()))?
                .next()
                .ok_or_else(|| bad("the host has no address".into()))?;
            let listener = TcpListener::bind(sock).map_err(listen)?;
            return Ok(GdbListener::Tcp {
                listener,
                addr: addr.to_string(),
            });
        }
        let path = Path::new(addr);
        remove_stale_socket(path)?;
        let listen = |source| DebugError::Listen {
            addr: addr.to_string(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(listen)?;
        // A SIGINT/SIGTERM ends the process without unwinding: the signal thread
        // removes the file then.
        crate::signals::remove_on_interrupt(path);
        let meta = std::fs::symlink_metadata(path).map_err(listen)?;
        Ok(GdbListener::Unix {
            listener,
            file: SocketFile {
                path: path.to_path_buf(),
                id: (meta.dev(), meta.ino()),
            },
        })
    }

    /// A second owner of the socket file, for the run to drop on its way out (the
    /// listener itself may be stuck in `accept` on another thread then).
    pub fn socket_file(&self) -> Option<SocketFile> {
        match self {
            GdbListener::Tcp { .. } => None,
            GdbListener::Unix { file, .. } => Some(file.clone()),
        }
    }

    /// What to tell GDB's `target remote`.
    pub fn address(&self) -> String {
        match self {
            GdbListener::Tcp { addr, .. } => addr.clone(),
            GdbListener::Unix { file, .. } => file.path.display().to_string(),
        }
    }

    /// Waits up to `timeout` (`None`: for ever) for a connection; true when one is
    /// pending, false when the time ran out.
    pub fn wait_for_client(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<bool, DebugError> {
        let fd = match self {
            GdbListener::Tcp { listener, .. } => listener.as_raw_fd(),
            GdbListener::Unix { listener, .. } => listener.as_raw_fd(),
        };
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    // Rounded up, so a wait never ends early; capped at what poll takes.
                    i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
                }
            };
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd for the duration of the call, naming the
            // listener's live descriptor.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            match n {
                0 => return Ok(false),
                n if n > 0 => return Ok(true),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != ErrorKind::Interrupted {
                        return Err(DebugError::Accept {
                            addr: self.address(),
                            source: e,
                        });
                    }
                }
            }
        }
    }

    /// Waits for GDB. A connection closed before it sent anything (another monitor
    /// checking whether this socket is live) is not GDB: keep waiting. The socket file
    /// goes (with the listener) once GDB is connected.
    pub fn accept(self) -> Result<Conn, DebugError> {
        let accept_err = |source| DebugError::Accept {
            addr: self.address(),
            source,
        };
        loop {
            match &self {
                GdbListener::Tcp { listener, .. } => {
                    let (stream, _) = listener.accept().map_err(accept_err)?;
                    if has_data(&stream).map_err(accept_err)? {
                        let _ = stream.set_nodelay(true);
                        return Ok(Box::new(stream));
                    }
                }
                GdbListener::Unix { listener, .. } => {
                    let (stream, _) = listener.accept().map_err(accept_err)?;
                    if has_data(&stream).map_err(accept_err)? {
                        return Ok(Box::new(stream));
                    }
                }
            }
        }
    }
}

/// Makes way for a socket at `path`: nothing there is fine, a socket nobody listens on
/// is removed, anything else is refused.
fn remove_stale_socket(path: &Path) -> Result<(), DebugError> {
    let listen = |source| DebugError::Listen {
        addr: path.display().to_string(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(listen(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(DebugError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(DebugError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(listen)
        }
        Err(e) => Err(listen(e)),
    }
}

/// Blocks until `stream` has data or is closed; true for data. GDB speaks first.
fn has_data(stream: &impl AsRawFd) -> std::io::Result<bool> {
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is a valid one-byte buffer for the duration of the call, and
        // the descriptor belongs to a live stream; MSG_PEEK leaves the byte queued.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK,
            )
        };
        match n {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flexos-listen-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn addresses_that_look_like_host_port_must_be_one() {
        for bad in ["999.1.1.1:1", "127.0.0.1:99999", "127.0.0.1:x"] {
            let err = GdbListener::bind(bad).err().expect(bad);
            assert!(matches!(err, DebugError::BadAddress { .. }), "{bad}: {err}");
            assert!(!Path::new(bad).exists(), "no socket file named {bad}");
        }
        assert!(matches!(
            GdbListener::bind(""),
            Err(DebugError::EmptyAddress)
        ));
        let ok = GdbListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(ok, GdbListener::Tcp { .. }));
    }

    #[test]
    fn only_stale_sockets_are_replaced() {
        let dir = scratch("stale");
        let file = dir.join("regular");
        std::fs::write(&file, b"keep me").unwrap();
        let err = GdbListener::bind(file.to_str().unwrap()).err().unwrap();
        assert!(matches!(err, DebugError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let sock = dir.join("gdb.sock");
        let live = GdbListener::bind(sock.to_str().unwrap()).unwrap();
        let err = GdbListener::bind(sock.to_str().unwrap()).err().unwrap();
        assert!(matches!(err, DebugError::InUse { .. }), "{err}");

        drop(live);
        assert!(!sock.exists(), "our own socket file goes with the listener");

        // A socket left behind by a dead process is replaced.
        let stale = UnixListener::bind(dir.join("stale.sock")).unwrap();
        drop(stale);
        assert!(dir.join("stale.sock").exists());
        GdbListener::bind(dir.join("stale.sock").to_str().unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
