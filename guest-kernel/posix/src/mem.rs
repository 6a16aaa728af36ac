//! Memory: `mmap` of anonymous memory, `munmap`, `mremap`, `brk`, `madvise` and
//! `mprotect`, over the compartment's private heap.
//!
//! An anonymous mapping is a page-aligned, zeroed allocation of the kernel's heap
//! (talc), remembered by its start; the program's malloc (musl's mallocng) and its
//! thread stacks live there. The heap has no page tables of its own here, so:
//!
//! - `mprotect` changes nothing and succeeds (guard pages are not enforced: musl's
//!   thread-stack guards and nothing else ask for them);
//! - `munmap` of part of a mapping is remembered, and the memory goes back to the heap
//!   when the whole mapping has been unmapped;
//! - `brk` never moves (mallocng then takes everything from `mmap`);
//! - file mappings are refused (`ENODEV`): nothing the layer runs maps a file.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::collections::BTreeMap;
use core::cell::RefCell;

use crate::Global;
use crate::linux::{
    EINVAL, ENOMEM, MAP_ANONYMOUS, MAP_FIXED, MREMAP_FIXED, MREMAP_MAYMOVE, PAGE_SIZE,
};

const ENODEV: i64 = 19;

/// A live mapping: its length, and how many of its bytes are still mapped.
struct Mapping {
    len: usize,
    mapped: usize,
}

static MAPPINGS: Global<RefCell<BTreeMap<usize, Mapping>>> =
    Global::new(RefCell::new(BTreeMap::new()));

fn pages(len: usize) -> Option<usize> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

/// Allocates `len` bytes of zeroed, page-aligned memory; its address or `-ENOMEM`.
pub fn map_anonymous(len: usize) -> i64 {
    let Some(len) = pages(len).filter(|&l| l > 0) else {
        return -EINVAL;
    };
    let Ok(layout) = Layout::from_size_align(len, PAGE_SIZE) else {
        return -ENOMEM;
    };
    // SAFETY: a non-zero size (checked above).
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return -ENOMEM;
    }
    MAPPINGS
        .get()
        .borrow_mut()
        .insert(ptr as usize, Mapping { len, mapped: len });
    ptr as i64
}

/// `mmap(addr, len, prot, flags, fd, off)`.
pub fn mmap(addr: usize, len: usize, _prot: u64, flags: u64, fd: i64, _off: u64) -> i64 {
    if flags & MAP_ANONYMOUS == 0 || fd >= 0 {
        return -ENODEV;
    }
    if flags & MAP_FIXED != 0 {
        // Only inside a mapping we gave out (musl never asks otherwise): zero it.
        return match containing(addr, len) {
            Some(_) => {
                // SAFETY: the range lies inside a live mapping of ours.
                unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len) };
                addr as i64
            }
            None => -ENOMEM,
        };
    }
    map_anonymous(len)
}

/// The start of the live mapping holding `addr .. addr + len`, if one does.
fn containing(addr: usize, len: usize) -> Option<usize> {
    let maps = MAPPINGS.get().borrow();
    let (&start, m) = maps.range(..=addr).next_back()?;
    let end = addr.checked_add(len)?;
    (end <= start + m.len).then_some(start)
}

/// Returns a mapping's memory to the heap.
fn release(start: usize, len: usize) {
    let layout = Layout::from_size_align(len, PAGE_SIZE).expect("a mapping's layout was valid");
    // SAFETY: `start` was returned by `alloc_zeroed` with this layout and is released once
    // (it has just been removed from the table).
    unsafe { dealloc(start as *mut u8, layout) };
}

/// `munmap(addr, len)`: 0 or `-EINVAL`.
pub fn munmap(addr: usize, len: usize) -> i64 {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return -EINVAL;
    }
    let Some(len) = pages(len) else {
        return -EINVAL;
    };
    unmap(addr, len);
    0
}

/// Unmaps `addr .. addr + len` of a mapping (nothing if no mapping holds it).
pub fn unmap(addr: usize, len: usize) {
    let Some(start) = containing(addr, len) else {
        return;
    };
    let done = {
        let mut maps = MAPPINGS.get().borrow_mut();
        let m = maps.get_mut(&start).expect("containing found it");
        m.mapped = m.mapped.saturating_sub(len);
        if m.mapped == 0 {
            let len = m.len;
            maps.remove(&start);
            Some(len)
        } else {
            None
        }
    };
    if let Some(len) = done {
        release(start, len);
    }
}

/// `mremap(old, old_len, new_len, flags)`: grows or shrinks a whole mapping, moving it
/// when allowed.
pub fn mremap(old: usize, old_len: usize, new_len: usize, flags: u64) -> i64 {
    if flags & MREMAP_FIXED != 0 || !old.is_multiple_of(PAGE_SIZE) {
        return -EINVAL;
    }
    let (Some(old_len), Some(new_len)) = (pages(old_len), pages(new_len)) else {
        return -EINVAL;
    };
    if new_len == 0 {
        return -EINVAL;
    }
    let whole = {
        let maps = MAPPINGS.get().borrow();
        maps.get(&old).map(|m| m.len)
    };
    let Some(cur) = whole.filter(|&l| l == old_len) else {
        return -EINVAL;
    };
    if new_len <= cur {
        return old as i64;
    }
    if flags & MREMAP_MAYMOVE == 0 {
        return -ENOMEM;
    }
    let new = map_anonymous(new_len);
    if new < 0 {
        return new;
    }
    // SAFETY: both are live mappings of at least `cur` bytes, and distinct.
    unsafe { core::ptr::copy_nonoverlapping(old as *const u8, new as *mut u8, cur) };
    unmap(old, cur);
    new
}

/// Bytes currently mapped (for `sysinfo` and the memory report).
pub fn mapped_bytes() -> usize {
    MAPPINGS.get().borrow().values().map(|m| m.mapped).sum()
}
