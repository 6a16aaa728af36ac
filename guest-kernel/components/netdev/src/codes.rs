//! Error codes of the `nic` interface (negative return values).

/// Nothing yet: no received frame, no free transmit buffer.
pub const E_AGAIN: i64 = -11;
/// No such buffer id or counter.
pub const E_BAD_ID: i64 = -9;
/// No network device, or it failed to start.
pub const E_NO_DEVICE: i64 = -19;
/// The buffer handle was refused, or a frame is empty or longer than the MTU.
pub const E_BAD_BUFFER: i64 = -14;
/// The driver is busy with another call (re-entrance).
pub const E_BUSY: i64 = -16;
