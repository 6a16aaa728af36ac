//! Bulk copies between private memory and a shared buffer with one `rep movsb` each.
//!
//! rpc-shm's [`SharedBytes::read`] / [`SharedBytes::write`] move a word at a time with
//! atomics (~0.7 cycles a byte here: a 4 KiB block costs ~2800 cycles, measured
//! in a guest); the storage path moves every byte of a commit through shared buffers
//! three times, so it uses these instead for its data (names and short lists still go
//! through rpc-shm's). The copy is an `asm!` block: the compiler knows nothing of what
//! it reads or writes, so a peer writing the shared bytes at the same time is a data
//! race on hardware only (the copy may return a mix of old and new bytes, like the
//! word copy), never undefined behaviour in the Rust program, and no Rust reference to
//! shared memory is formed. The device's own DMA into these buffers is the same kind of
//! access. As with rpc-shm's copies: copy data out once, then check the private copy.

use core::arch::asm;

use flexos_kernel::rpc::{GateError, SharedBytes};

/// Checks `at .. at + len` against the buffer; returns the address of byte `at`.
fn span(bytes: &SharedBytes<'_>, at: usize, len: usize) -> Result<*mut u8, GateError> {
    match at.checked_add(len) {
        Some(end) if end <= bytes.len() => Ok(bytes.as_ptr().wrapping_add(at)),
        _ => Err(GateError::BadHandle),
    }
}

/// `rep movsb` of `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// `src .. src + len` is mapped and readable, `dst .. dst + len` mapped and writable,
/// and no Rust reference covers the part of either that is shared memory.
unsafe fn movsb(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: per the caller; the direction flag is clear (the ABI keeps it clear
    // outside asm that sets it), so the copy runs forwards over exactly `len` bytes.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies `src` into `bytes` at `at`.
pub fn write(bytes: &SharedBytes<'_>, at: usize, src: &[u8]) -> Result<(), GateError> {
    let dst = span(bytes, at, src.len())?;
    // SAFETY: `dst` spans `src.len()` bytes inside the validated shared buffer (mapped
    // writable in this compartment, or touching it faults as an isolation violation,
    // exactly as rpc-shm's own copy would); `src` is a private slice.
    unsafe { movsb(dst, src.as_ptr(), src.len()) };
    Ok(())
}

/// Copies `dst.len()` bytes of `bytes` from `at` into `dst`.
pub fn read(bytes: &SharedBytes<'_>, at: usize, dst: &mut [u8]) -> Result<(), GateError> {
    let src = span(bytes, at, dst.len())?;
    // SAFETY: as in `write`, with the roles swapped; `dst` is a private slice we hold
    // exclusively.
    unsafe { movsb(dst.as_mut_ptr(), src, dst.len()) };
    Ok(())
}
