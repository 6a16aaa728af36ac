//! The `victim` component: a well-meaning callee, with one bug on purpose.
//!
//! `read_at` trusts an address it is given, the mistake FlexOS needed Coccinelle rules
//! to catch: the gate carries it as a plain `u64` (any integer is gate-safe), but in
//! another compartment it points at nothing of ours, so the read is an isolation
//! violation the monitor reports. `crash` dies with a null dereference while its caller
//! waits. The other methods are the targets of the malicious ring writer.

use core::arch::asm;
use core::hint::black_box;

use flexos_kernel::rpc::{self, SharedBuf};

rpc::interface! {
    /// The callee every scenario calls.
    pub mod victim (id = 1) {
        /// Returns `a + b` (the well-behaved call).
        fn add(a: u64, b: u64) -> u64 = 0;
        /// Reads the u64 at `addr`: a private pointer that crossed the gate as an integer.
        fn read_at(addr: u64) -> u64 = 1;
        /// Crashes with a null dereference.
        fn crash() -> u64 = 2;
        /// Returns `on` as 0 or 1 (only 0 and 1 are valid `bool` words).
        fn flag(on: bool) -> u64 = 3;
        /// Returns the length of a shared buffer (the handle is checked against the heap).
        fn measure(buf: SharedBuf) -> u64 = 4;
    }
}

pub struct Victim;

impl victim::Api for Victim {
    fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }

    fn read_at(&self, addr: u64) -> u64 {
        read_leaked_pointer(addr)
    }

    fn crash(&self) -> u64 {
        crash_in_callee()
    }

    fn flag(&self, on: bool) -> u64 {
        u64::from(on)
    }

    fn measure(&self, buf: SharedBuf) -> u64 {
        u64::from(buf.len())
    }
}

/// Reads the u64 at `addr` as if it were ours. In `asm!` so the load is exactly one
/// instruction of this function (a Rust read through a forged pointer would be
/// undefined behaviour the compiler may exploit).
#[inline(never)]
fn read_leaked_pointer(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: deliberately reads memory that may not be ours: in another compartment
    // than the pointer's owner the monitor stops this compartment (isolation
    // violation); in the owner's compartment it is a live heap object. The load has no
    // other effect.
    unsafe {
        asm!(
            "mov {value}, qword ptr [{addr}]",
            addr = in(reg) black_box(addr),
            value = out(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    value
}

/// Dereferences null: page 0 is never mapped, so this is a #PF the monitor reports
/// with this function's name in the backtrace.
#[inline(never)]
fn crash_in_callee() -> u64 {
    let addr: usize = black_box(0);
    let value: u64;
    // SAFETY: deliberately faults (page 0 is unmapped); the compartment never resumes.
    unsafe {
        asm!(
            "mov {value}, qword ptr [{addr}]",
            addr = in(reg) addr,
            value = out(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    panic!("gatecheck: read {value:#x} at address 0 without a fault");
}

pub static VICTIM_SERVER: victim::Server<Victim> = victim::Server(Victim);
