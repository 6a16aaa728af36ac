//! Error codes of the `sock` interface (negative return values): plain Rust.

/// Nothing yet (no connection to accept, no room to send): wait and retry.
pub const E_AGAIN: i64 = -11;
/// No such listener or connection.
pub const E_BAD_ID: i64 = -9;
/// No network device, or it failed to start.
pub const E_NO_DEVICE: i64 = -19;
/// The port is already listened on, or 0.
pub const E_PORT: i64 = -98;
/// No memory (shared heap or private) for the connection's ring or socket.
pub const E_NO_MEMORY: i64 = -12;
/// The buffer handle was refused.
pub const E_BAD_BUFFER: i64 = -14;
/// The connection was reset or is closed for sending.
pub const E_CLOSED: i64 = -104;
/// The stack is busy with another call (re-entrance).
pub const E_BUSY: i64 = -16;

/// What a code means, for messages.
pub fn describe(code: i64) -> &'static str {
    match code {
        E_AGAIN => "try again",
        E_BAD_ID => "no such socket",
        E_NO_DEVICE => "no network device",
        E_PORT => "port in use or invalid",
        E_NO_MEMORY => "out of memory",
        E_BAD_BUFFER => "bad shared buffer",
        E_CLOSED => "connection closed",
        E_BUSY => "stack busy",
        _ => "unknown error",
    }
}
