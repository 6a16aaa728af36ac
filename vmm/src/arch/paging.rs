//! 4-level page tables for a compartment, written into its VMM area.
//!
//! Each 2 MiB stretch that one permission covers becomes a single large page; stretches
//! with mixed permissions (image segments, the VMM area, stack guards) get a 4 KiB table.
//! 1 GiB pages are avoided: they triple-fault on this host (kvm-pvm).

use flexos_abi::{LARGE_PAGE_SIZE, PAGE_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{GuestLayout, Perm, PAGE_TABLES_END, PAGE_TABLES_START};
use crate::error::Result;
use crate::memory::MemoryError;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const NO_EXEC: u64 = 1 << 63;
/// Non-leaf entries grant everything; the leaf decides.
const TABLE: u64 = PRESENT | WRITABLE | USER;

const ENTRIES: usize = 512;
const GIB: u64 = 1 << 30;

fn leaf_flags(perm: Perm) -> u64 {
    match perm {
        Perm::Unmapped => 0,
        Perm::Supervisor => PRESENT | WRITABLE,
        Perm::UserRead => PRESENT | USER | NO_EXEC,
        Perm::UserExec => PRESENT | USER,
        Perm::UserWrite => PRESENT | WRITABLE | USER | NO_EXEC,
    }
}

/// Hands out zeroed table pages from the page-table area and writes them back.
struct Tables<'a> {
    mem: &'a GuestMemoryMmap,
    next: u64,
}

impl Tables<'_> {
    fn alloc(&mut self) -> Result<u64> {
        let addr = self.next;
        if addr + PAGE_SIZE > PAGE_TABLES_END {
            return Err(MemoryError::Layout("page tables do not fit in the VMM area").into());
        }
        self.next += PAGE_SIZE;
        Ok(addr)
    }

    fn write(&self, addr: u64, table: &[u64; ENTRIES]) -> Result<()> {
        let mut bytes = [0u8; ENTRIES * 8];
        for (chunk, e) in bytes.chunks_exact_mut(8).zip(table) {
            chunk.copy_from_slice(&e.to_le_bytes());
        }
        self.mem
            .write_slice(&bytes, GuestAddress(addr))
            .map_err(|source| {
                MemoryError::Write {
                    what: "a page table",
                    addr,
                    source,
                }
                .into()
            })
    }
}

/// The permission covering `addr` (ranges are sorted and contiguous).
fn perm_at(ranges: &[(u64, u64, Perm)], addr: u64) -> Perm {
    let i = ranges.partition_point(|r| r.1 <= addr);
    ranges
        .get(i)
        .filter(|r| r.0 <= addr)
        .map_or(Perm::Unmapped, |r| r.2)
}

/// Builds the page tables for `layout` and returns the PML4 address (CR3).
pub fn build(mem: &GuestMemoryMmap, layout: &GuestLayout) -> Result<u64> {
    let ranges = layout.ranges();
    let mut tables = Tables {
        mem,
        next: PAGE_TABLES_START,
    };
    let pml4_addr = tables.alloc()?;
    let pdpt_addr = tables.alloc()?;
    let mut pml4 = [0u64; ENTRIES];
    let mut pdpt = [0u64; ENTRIES];
    pml4[0] = pdpt_addr | TABLE;

    // One PDPT maps 512 GiB; the layout never gets near that, but say so if it did.
    let gibs = usize::try_from(layout.span_end() / GIB)
        .ok()
        .filter(|&n| n <= ENTRIES)
        .ok_or(MemoryError::AddressSpace(layout.span_end()))?;
    for (gib, pdpte) in (0u64..).zip(&mut pdpt[..gibs]) {
        let pd_addr = tables.alloc()?;
        *pdpte = pd_addr | TABLE;
        let mut pd = [0u64; ENTRIES];
        for (i, pde) in pd.iter_mut().enumerate() {
            let start = gib * GIB + i as u64 * LARGE_PAGE_SIZE;
            let end = start + LARGE_PAGE_SIZE;
            let first = ranges.partition_point(|r| r.1 <= start);
            let uniform = ranges
                .get(first)
                .is_some_and(|r| r.0 <= start && r.1 >= end);
            if uniform {
                let flags = leaf_flags(ranges[first].2);
                if flags != 0 {
                    *pde = start | flags | HUGE;
                }
                continue;
            }
            let pt_addr = tables.alloc()?;
            let mut pt = [0u64; ENTRIES];
            for (j, pte) in pt.iter_mut().enumerate() {
                let page = start + j as u64 * PAGE_SIZE;
                let flags = leaf_flags(perm_at(&ranges, page));
                if flags != 0 {
                    *pte = page | flags;
                }
            }
            tables.write(pt_addr, &pt)?;
            *pde = pt_addr | TABLE;
        }
        tables.write(pd_addr, &pd)?;
    }
    tables.write(pdpt_addr, &pdpt)?;
    tables.write(pml4_addr, &pml4)?;
    Ok(pml4_addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::image_segment::{Segment, SegmentPerms};
    use crate::arch::layout::MemoryPlan;
    use crate::memory::{compartment_memory, SharedRegion};

    /// Walks the tables like the MMU does; returns the leaf entry for `va`.
    fn walk(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
        let mut table = cr3;
        for level in (1..=4).rev() {
            let idx = (va >> (12 + 9 * (level - 1))) & 0x1ff;
            let e: u64 = mem.read_obj(GuestAddress(table + idx * 8)).unwrap();
            if e & PRESENT == 0 {
                return None;
            }
            if level == 1 || (level == 2 && e & HUGE != 0) {
                return Some(e);
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
        unreachable!()
    }

    #[test]
    fn maps_each_region_with_its_permission() {
        let shared = SharedRegion::new(2 << 20, 1).unwrap();
        let plan = MemoryPlan::new(16 << 20, 0x10_6000, 1).unwrap();
        let mem = compartment_memory(&plan, 0, &shared).unwrap();
        let segs = vec![
            Segment {
                start: 0x10_0000,
                end: 0x10_3000,
                perms: SegmentPerms {
                    write: false,
                    exec: true,
                },
            },
            Segment {
                start: 0x10_3000,
                end: 0x10_4000,
                perms: SegmentPerms {
                    write: false,
                    exec: false,
                },
            },
            Segment {
                start: 0x10_4000,
                end: 0x10_6000,
                perms: SegmentPerms {
                    write: true,
                    exec: false,
                },
            },
        ];
        let layout = GuestLayout::new(plan, 0, segs, 0x10_6000, shared.mappings(0), 2 << 20);
        let cr3 = build(&mem, &layout).unwrap();

        assert_eq!(walk(&mem, cr3, 0x0), None, "null page");
        let vmm = walk(&mem, cr3, 0x3000).unwrap();
        assert_eq!(
            vmm & (USER | WRITABLE | NO_EXEC),
            WRITABLE,
            "VMM area is ring 0 only"
        );
        let text = walk(&mem, cr3, 0x10_1000).unwrap();
        assert_eq!(text & (USER | WRITABLE | NO_EXEC), USER);
        let ro = walk(&mem, cr3, 0x10_3000).unwrap();
        assert_eq!(ro & (USER | WRITABLE | NO_EXEC), USER | NO_EXEC);
        let data = walk(&mem, cr3, 0x10_5000).unwrap();
        assert_eq!(
            data & (USER | WRITABLE | NO_EXEC),
            USER | WRITABLE | NO_EXEC
        );
        assert_eq!(
            walk(&mem, cr3, layout.stack_guard().start),
            None,
            "stack guard"
        );
        assert!(walk(&mem, cr3, layout.stack_top - 8).is_some());
        assert!(
            walk(&mem, cr3, 0x8000_0000).unwrap() & HUGE != 0,
            "unbacked space, large page"
        );
        let header = walk(&mem, cr3, flexos_abi::SHARED_BASE).unwrap();
        assert_eq!(
            header & (USER | WRITABLE | NO_EXEC),
            USER | NO_EXEC,
            "the shared header is read-only"
        );
        let state = walk(&mem, cr3, flexos_abi::SHARED_BASE + rpc_shm::STATES_OFFSET).unwrap();
        assert_eq!(
            state & (USER | WRITABLE | NO_EXEC),
            USER | WRITABLE | NO_EXEC,
            "own state page"
        );
        assert_eq!(
            walk(&mem, cr3, flexos_abi::SHARED_BASE + (2 << 20)),
            None,
            "past shared"
        );
        // Identity mapping.
        assert_eq!(text & 0x000f_ffff_ffff_f000, 0x10_1000);
    }
}
