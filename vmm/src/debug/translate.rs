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

/// Copies guest-virtual memory at `va` into `buf`, page by page; returns how many
/// bytes were readable before the first unmapped page.
pub fn read_virt(mem: &GuestMemoryMmap, cr3: u64, va: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let addr = va.wrapping_add(done as u64);
        let in_page = (0x1000 - (addr & 0xfff)) as usize;
        let n = in_page.min(buf.len() - done);
        let Some(gpa) = translate(mem, cr3, addr) else {
            break;
        };
        if mem
            .read_slice(&mut buf[done..done + n], GuestAddress(gpa))
            .is_err()
        {
            break;
        }
        done += n;
    }
    done
}

/// Writes `data` to guest-virtual memory at `va`, page by page; false if any page is
/// unmapped or unbacked (earlier pages may have been written).
pub fn write_virt(mem: &GuestMemoryMmap, cr3: u64, va: u64, data: &[u8]) -> bool {
    let mut done = 0;
    while done < data.len() {
        let addr = va.wrapping_add(done as u64);
        let in_page = (0x1000 - (addr & 0xfff)) as usize;
        let n = in_page.min(data.len() - done);
        let Some(gpa) = translate(mem, cr3, addr) else {
            return false;
        };
        if mem
            .write_slice(&data[done..done + n], GuestAddress(gpa))
            .is_err()
        {
            return false;
        }
        done += n;
    }
    true
}
