//! The global allocator over the private heap `heap_start .. heap_start + heap_size`
//! that the monitor describes in the boot info.
//!
//! It is [`talc`]: a no_std, O(1)-ish bin allocator that coalesces on free and grows in
//! place on realloc, which matters for the churn of smoltcp and SQLite. It sits behind a
//! spin lock for `GlobalAlloc`'s `&self`; on one vCPU the lock is never contended.
//!
//! An allocation failure goes to Rust's default alloc-error handler, which on no_std
//! panics with "memory allocation of N bytes failed"; the panic handler reports it.

use talc::{ErrOnOom, Span, Talc, Talck};

type Lock = spin::mutex::SpinMutex<()>;

#[global_allocator]
static ALLOCATOR: Talck<Lock, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Why the heap could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapError {
    /// The range is empty, wraps around, or contains the null page.
    BadRange,
    /// The allocator rejected the range (too small for its metadata).
    TooSmall,
}

/// Hands `start .. start + size` to the allocator. A zero size leaves the heap empty
/// (every allocation then fails).
///
/// # Safety
///
/// The range must be private, mapped, writable memory used for nothing else, and this
/// must be called at most once.
pub(crate) unsafe fn init(start: u64, size: u64) -> Result<(), HeapError> {
    if size == 0 {
        return Ok(());
    }
    let end = start.checked_add(size).ok_or(HeapError::BadRange)?;
    if start < flexos_abi::NULL_GUARD_END || end > usize::MAX as u64 {
        return Err(HeapError::BadRange);
    }
    let span = Span::from_base_size(start as usize as *mut u8, size as usize);
    // SAFETY: the caller guarantees the range is ours alone, mapped and writable.
    unsafe { ALLOCATOR.lock().claim(span) }
        .map(|_| ())
        .map_err(|()| HeapError::TooSmall)
}
