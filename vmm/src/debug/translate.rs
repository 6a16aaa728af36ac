//! Guest-virtual to guest-physical translation through a compartment's own page
//! tables, as the MMU does it, so the debugger reads exactly what the guest sees.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PRESENT: u64 = 1;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The guest-physical address `va` maps to, or `None` if it is not mapped.
pub fn translate(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
    // Only canonical lower-half addresses exist in our address spaces.
    if va >> 47 != 0 {
        return None;
    }
    let mut table = cr3 & ADDR_MASK;
    for level in (1..=4u32).rev() {
        let shift = 12 + 9 * (level - 1);
        let index = (va >> shift) & 0x1ff;
        let entry: u64 = mem.read_obj(GuestAddress(table + index * 8)).ok()?;
        if entry & PRESENT == 0 {
            return None;
        }
        let page_mask = (1u64 << shift) - 1;
        if level == 1 || (level <= 3 && entry & HUGE != 0) {
            return Some((entry & ADDR_MASK & !page_mask) | (va & page_mask));
        }
        table = entry & ADDR_MASK;
    }
    None
}

/// Splits `va .. va + len` at page boundaries and calls `f(gpa, from, to)` for each
/// piece (`from..to` indexes the caller's buffer); stops at the first unmapped page or
/// when `f` fails. Returns how many bytes were handled.
fn for_each_page(
    mem: &GuestMemoryMmap,
    cr3: u64,
    va: u64,
    len: usize,
    mut f: impl FnMut(GuestAddress, usize, usize) -> bool,
) -> usize {
    let mut done = 0;
    while done < len {
        let addr = va.wrapping_add(done as u64);
        let to_page_end = usize::try_from(0x1000 - (addr & 0xfff)).expect("at most a page");
        let n = to_page_end.min(len - done);
        match translate(mem, cr3, addr) {
            Some(gpa) if f(GuestAddress(gpa), done, done + n) => done += n,
            _ => break,
        }
    }
    done
}

/// Copies guest-virtual memory at `va` into `buf`, page by page; returns how many
/// bytes were readable before the first unmapped page.
pub fn read_virt(mem: &GuestMemoryMmap, cr3: u64, va: u64, buf: &mut [u8]) -> usize {
    let len = buf.len();
    for_each_page(mem, cr3, va, len, |gpa, from, to| {
        mem.read_slice(&mut buf[from..to], gpa).is_ok()
    })
}

/// Writes `data` to guest-virtual memory at `va`, page by page; false if any page is
/// unmapped or unbacked (earlier pages may have been written).
pub fn write_virt(mem: &GuestMemoryMmap, cr3: u64, va: u64, data: &[u8]) -> bool {
    for_each_page(mem, cr3, va, data.len(), |gpa, from, to| {
        mem.write_slice(&data[from..to], gpa).is_ok()
    }) == data.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::{GuestLayout, MemoryPlan};
    use crate::arch::paging;
    use crate::image::{Segment, SegmentPerms};
    use crate::memory::{compartment_memory, SharedRegion};

    #[test]
    fn reads_and_writes_cross_pages_and_stop_at_holes() {
        let shared = SharedRegion::new(2 << 20, 1).unwrap();
        let plan = MemoryPlan::new(16 << 20, 0x10_2000, 1).unwrap();
        let mem = compartment_memory(&plan, 0, &shared).unwrap();
        let segs = vec![Segment {
            start: 0x10_0000,
            end: 0x10_2000,
            perms: SegmentPerms {
                write: true,
                exec: false,
            },
        }];
        let layout = GuestLayout::new(plan, 0, segs, 0x10_2000, shared.mappings(0), 2 << 20);
        let cr3 = paging::build(&mem, &layout).unwrap();

        assert_eq!(translate(&mem, cr3, 0x10_1234), Some(0x10_1234));
        assert_eq!(translate(&mem, cr3, 0), None, "null page");
        assert_eq!(translate(&mem, cr3, 1 << 47), None, "non-canonical");

        // Across the boundary between the two image pages.
        assert!(write_virt(&mem, cr3, 0x10_0ffc, b"abcdefgh"));
        let mut back = [0u8; 8];
        assert_eq!(read_virt(&mem, cr3, 0x10_0ffc, &mut back), 8);
        assert_eq!(&back, b"abcdefgh");

        // Into the unmapped rest of the low region: only the mapped part is read.
        let mut buf = [0u8; 16];
        assert_eq!(read_virt(&mem, cr3, 0x10_1ff8, &mut buf), 8);
        assert!(!write_virt(&mem, cr3, 0x10_1ff8, &buf));
    }
}
