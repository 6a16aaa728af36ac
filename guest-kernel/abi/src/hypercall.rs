//! Hypercalls: `out dx, eax` with `dx` one of the ports below and `eax` the 32-bit
//! guest-physical address of the call's argument block. The monitor validates every
//! block (inside the compartment's memory, lengths capped) before it trusts a byte.
//!
//! Ring 3 may execute the `out` because the monitor's TSS I/O permission bitmap opens
//! these ports (and only these), not IOPL=3: kvm-pvm clears IOPL for guest ring 3 but
//! honours the bitmap, which is the tighter grant anyway.
//!
//! Each exit to the monitor costs ~26 us on this host, so the guest batches: the console
//! sends whole lines, never single bytes.

/// Base of the hypercall port range.
pub const PORT_BASE: u16 = 0x0F00;
/// Write a buffer to the console: [`ConsoleWrite`].
pub const PORT_CONSOLE: u16 = PORT_BASE;
/// Exit the whole run: [`ExitArgs`].
pub const PORT_EXIT: u16 = PORT_BASE + 1;
/// Sent by the ring-0 trampolines: the block is an [`ExceptionFrame`] on the IST stack.
pub const PORT_EXCEPTION: u16 = PORT_BASE + 2;
/// Guest panic: [`PanicArgs`].
pub const PORT_PANIC: u16 = PORT_BASE + 3;
/// Boot milestone for `--timings`: [`MilestoneArgs`].
pub const PORT_MILESTONE: u16 = PORT_BASE + 4;
/// Ring the doorbell of another compartment that sleeps. Unlike the other ports the
/// value is not an address but the target compartment id; the monitor binds this port
/// to an ioeventfd per target, so the call costs ~3 us and never reaches userspace.
pub const PORT_DOORBELL: u16 = PORT_BASE + 5;
/// Sleep until this compartment's doorbell rings or a timeout passes:
/// [`SleepArgs`]. Returns early if the doorbell rang since the last sleep.
pub const PORT_SLEEP: u16 = PORT_BASE + 6;
/// Number of ports in the range.
pub const PORT_COUNT: u16 = 7;

/// Longest sleep the monitor grants in one call, in microseconds; the guest re-checks
/// its rings and peers after every wake-up.
pub const SLEEP_MAX_US: u64 = 100_000;

/// Longest console write the monitor accepts in one call.
pub const CONSOLE_MAX: u64 = 4096;
/// Longest panic message or file name the monitor reads.
pub const PANIC_TEXT_MAX: u64 = 1024;
/// Highest exit code a guest can pass through; higher codes are reserved for the monitor.
pub const EXIT_CODE_MAX: u64 = 63;

/// Argument block of [`PORT_CONSOLE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsoleWrite {
    pub buf: u64,
    pub len: u64,
}

/// Argument block of [`PORT_EXIT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitArgs {
    pub code: u64,
}

/// Argument block of [`PORT_PANIC`]. The monitor takes the backtrace from the vCPU's
/// registers at the hypercall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PanicArgs {
    pub msg: u64,
    pub msg_len: u64,
    pub file: u64,
    pub file_len: u64,
    pub line: u32,
    pub column: u32,
}

/// Argument block of [`PORT_SLEEP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SleepArgs {
    /// Longest time to sleep, capped at [`SLEEP_MAX_US`].
    pub timeout_us: u64,
}

/// Milestone ids of [`PORT_MILESTONE`].
pub const MILESTONE_MAIN: u64 = 1;

/// Argument block of [`PORT_MILESTONE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MilestoneArgs {
    pub id: u64,
    /// Guest TSC when the milestone was reached.
    pub tsc: u64,
}

/// What a trampoline leaves on its IST stack, lowest address first: the two registers
/// it needs for the `out`, the vector and error code it pushed, then the frame the CPU
/// pushed on delivery.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExceptionFrame {
    pub rdx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_pinned_sizes() {
        assert_eq!(core::mem::size_of::<ConsoleWrite>(), 16);
        assert_eq!(core::mem::size_of::<ExitArgs>(), 8);
        assert_eq!(core::mem::size_of::<PanicArgs>(), 40);
        assert_eq!(core::mem::size_of::<MilestoneArgs>(), 16);
        assert_eq!(core::mem::size_of::<ExceptionFrame>(), 72);
        assert_eq!(core::mem::size_of::<SleepArgs>(), 8);
    }
}
