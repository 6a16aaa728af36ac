//! What can go wrong serving GDB: a `--gdb` address the monitor will not use, a socket
//! it cannot listen on, a connection that breaks, a request it refuses.

use std::path::PathBuf;

/// Errors of the debugger and its GDB stub.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("--gdb needs HOST:PORT or the path of a Unix socket, not an empty string")]
    EmptyAddress,

    #[error("--gdb {addr}: not a usable HOST:PORT ({reason}); for a Unix socket of that name write ./{addr}")]
    BadAddress { addr: String, reason: String },

    #[error("--gdb {}: refusing to replace it: it exists and is not a socket", path.display())]
    NotASocket { path: PathBuf },

    #[error("--gdb {}: another monitor is serving gdb on that socket", path.display())]
    InUse { path: PathBuf },

    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("accepting gdb on {addr}: {source}")]
    Accept {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("gdb connection failed: {0}")]
    Connection(String),

    #[error("cannot install the vCPU kick signal handler: {0}")]
    KickHandler(#[source] vmm_sys_util::errno::Error),

    #[error("no compartment is gdb thread {0}")]
    NoSuchThread(usize),

    #[error("{addr:#x} is not in the image's executable code; breakpoints go there only")]
    NotCode { addr: u64 },

    #[error("cannot write {addr:#x} in compartment {compartment}")]
    Write { addr: u64, compartment: u32 },
}
