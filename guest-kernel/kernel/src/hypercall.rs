//! Safe wrappers around the hypercalls of [`flexos_abi::hypercall`].
//!
//! A hypercall is `out dx, eax` with `dx` the port and `eax` the 32-bit guest-physical
//! address of an argument block; ring 3 may do this because the monitor's TSS I/O
//! permission bitmap opens exactly the hypercall ports (every other port raises #GP). Memory is identity-mapped and all private memory lies below 4 GiB, so the
//! address of a stack or static block is its guest-physical address. Each call exits to
//! the monitor (~26 us here), so callers batch: see [`crate::console`].

use core::arch::asm;

use flexos_abi::{
    CONSOLE_MAX, ConsoleWrite, ExitArgs, MilestoneArgs, PANIC_TEXT_MAX, PORT_CONSOLE,
    PORT_DOORBELL, PORT_EXIT, PORT_MILESTONE, PORT_PANIC, PORT_SLEEP, PanicArgs, SleepArgs,
};

/// Sends the block at `block` to `port`.
///
/// The `asm!` has no `nomem`/`readonly` option, so the compiler writes the block to
/// memory before the `out` and assumes the monitor may have read or written any memory
/// whose address escaped (the cast below exposes it).
#[inline(always)]
fn call<T>(port: u16, block: &T) {
    let addr = block as *const T as usize;
    debug_assert!(addr <= u32::MAX as usize, "hypercall block above 4 GiB");
    // SAFETY: `out` to a hypercall port is allowed in ring 3 by the monitor's I/O bitmap. It touches no
    // memory of ours except through the monitor, which only reads the block, and it
    // preserves every register and flag.
    unsafe {
        asm!(
            "out dx, eax",
            in("dx") port,
            in("eax") addr as u32,
            options(nostack, preserves_flags),
        );
    }
}

/// Writes `bytes` to the console, in as few calls as the monitor's limit allows
/// (one per [`CONSOLE_MAX`] bytes).
pub fn console_write(bytes: &[u8]) {
    for chunk in bytes.chunks(CONSOLE_MAX as usize) {
        let block = ConsoleWrite {
            buf: chunk.as_ptr() as u64,
            len: chunk.len() as u64,
        };
        call(PORT_CONSOLE, &block);
    }
}

/// Asks the monitor to print `len` bytes at guest-physical `addr`, which need not be
/// memory this compartment may read: what a compromised compartment can ask for. The
/// monitor refuses a buffer it cannot reach, and names whose memory it is (tests of
/// that refusal use this; correct code uses [`console_write`]).
#[inline(never)]
pub fn console_write_at(addr: u64, len: u64) {
    call(PORT_CONSOLE, &ConsoleWrite { buf: addr, len });
}

/// Ends the whole run with `code` (0..=63 pass through; the monitor owns the others).
///
/// Does not flush the console: use [`crate::exit`] for that.
pub fn exit(code: u64) -> ! {
    call(PORT_EXIT, &ExitArgs { code });
    halt()
}

/// Reports a panic; the monitor takes the backtrace from the registers at the call.
/// `msg` and `file` are cut to [`PANIC_TEXT_MAX`] bytes.
pub fn panic(msg: &[u8], file: &[u8], line: u32, column: u32) -> ! {
    let msg = &msg[..msg.len().min(PANIC_TEXT_MAX as usize)];
    let file = &file[..file.len().min(PANIC_TEXT_MAX as usize)];
    let block = PanicArgs {
        msg: msg.as_ptr() as u64,
        msg_len: msg.len() as u64,
        file: file.as_ptr() as u64,
        file_len: file.len() as u64,
        line,
        column,
    };
    call(PORT_PANIC, &block);
    halt()
}

/// Reports boot milestone `id` (e.g. [`flexos_abi::MILESTONE_MAIN`]) reached at guest
/// TSC `tsc`, for `--timings`.
pub fn milestone(id: u64, tsc: u64) {
    call(PORT_MILESTONE, &MilestoneArgs { id, tsc });
}

/// Sleeps until this compartment's doorbell rings or `timeout_us` microseconds pass
/// (the monitor caps the timeout at [`flexos_abi::SLEEP_MAX_US`]). Latched: returns at
/// once if the doorbell rang since the previous sleep. Costs a full exit to the
/// monitor (~26 us here) even when it returns at once, so only idle code calls it.
pub fn sleep(timeout_us: u64) {
    call(PORT_SLEEP, &SleepArgs { timeout_us });
}

/// Rings compartment `target`'s doorbell: its current or next [`sleep`] returns. The
/// value sent is the target id, not a block address; the monitor binds the port to an
/// ioeventfd per target, so this exit stays in the host kernel (~3 us).
///
/// A `target` that is not a compartment of the run is a crash of the caller (the
/// monitor reports it as an invalid hypercall).
pub fn doorbell(target: u32) {
    // SAFETY: `out` to a hypercall port is allowed in ring 3 by the monitor's I/O
    // bitmap; the doorbell reads no guest memory and preserves every register and flag.
    // No `nomem`: the compiler must not sink earlier stores (the request the doorbell
    // announces) past the exit.
    unsafe {
        asm!(
            "out dx, eax",
            in("dx") PORT_DOORBELL,
            in("eax") target,
            options(nostack, preserves_flags),
        );
    }
}

/// Where a terminating hypercall lands if the monitor ever resumes us: ring 3 cannot
/// `hlt`, so spin.
fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
