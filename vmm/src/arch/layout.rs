//! Where the monitor puts its own structures inside the VMM area
//! ([`flexos_abi::VMM_AREA_START`] .. [`flexos_abi::BOOT_INFO_ADDR`]), and the
//! permission map of a compartment's whole address space.

use flexos_abi::{
    BOOT_INFO_ADDR, BOOT_INFO_SIZE, MAIN_STACK_SIZE, NULL_GUARD_END, PAGE_SIZE, SHARED_BASE,
    STACK_GUARD_SIZE, VMM_AREA_END,
};

use crate::image::Segment;

/// Global descriptor table (7 slots: null, kernel code/data, user data/code, TSS).
pub const GDT_ADDR: u64 = 0x1000;
/// Task state segment (holds the IST stack pointers).
pub const TSS_ADDR: u64 = 0x1100;
/// Interrupt descriptor table: the 32 exception vectors.
pub const IDT_ADDR: u64 = 0x2000;
/// Ring-0 exception trampolines.
pub const TRAMPOLINE_ADDR: u64 = 0x3000;
/// IST1 (0x4000..0x8000): every exception except double fault and NMI/#MC.
pub const IST1_TOP: u64 = 0x8000;
/// IST2 (0x8000..0xA000): double fault, NMI, machine check (a fault inside IST1's
/// trampoline lands here).
pub const IST2_TOP: u64 = 0xA000;
/// Page tables are allocated from here up to the boot-info window.
pub const PAGE_TABLES_START: u64 = 0x1_0000;
pub const PAGE_TABLES_END: u64 = BOOT_INFO_ADDR;

/// How a range of guest addresses is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Not present: any access faults.
    Unmapped,
    /// Monitor structures: ring 0 only.
    Supervisor,
    /// User read-only, no execute (rodata, boot info).
    UserRead,
    /// User read + execute (text).
    UserExec,
    /// User read/write, no execute (data, heap, stack, shared, unbacked space).
    UserWrite,
}

/// A compartment's private memory, laid out: image, heap, guard, stack.
#[derive(Clone, Debug)]
pub struct GuestLayout {
    pub mem_size: u64,
    pub segments: Vec<Segment>,
    pub image_end: u64,
    pub heap_start: u64,
    pub heap_end: u64,
    pub stack_bottom: u64,
    pub stack_top: u64,
    pub shared_size: u64,
}

impl GuestLayout {
    /// First address the image may not reach for `mem_size` bytes of private memory:
    /// the stack, its guard, and at least one page of heap come after it.
    pub fn image_limit(mem_size: u64) -> u64 {
        mem_size.saturating_sub(MAIN_STACK_SIZE + STACK_GUARD_SIZE + PAGE_SIZE)
    }

    pub fn new(mem_size: u64, segments: Vec<Segment>, image_end: u64, shared_size: u64) -> Self {
        let stack_top = mem_size;
        let stack_bottom = stack_top - MAIN_STACK_SIZE;
        GuestLayout {
            mem_size,
            segments,
            image_end,
            heap_start: image_end,
            heap_end: stack_bottom - STACK_GUARD_SIZE,
            stack_bottom,
            stack_top,
            shared_size,
        }
    }

    /// The guard page below the main stack.
    pub fn stack_guard(&self) -> std::ops::Range<u64> {
        self.stack_bottom - STACK_GUARD_SIZE..self.stack_bottom
    }

    /// End of the address space the page tables describe (shared region rounded to 1 GiB).
    pub fn span_end(&self) -> u64 {
        SHARED_BASE + self.shared_size.next_multiple_of(1 << 30)
    }

    /// The permission of every address in `0 .. span_end()`, as sorted, contiguous ranges.
    ///
    /// Everything below the shared region that is not private memory is mapped user
    /// read/write although nothing backs it: an access there leaves the guest as an MMIO
    /// exit the monitor reports as an isolation violation, naming the address.
    pub fn ranges(&self) -> Vec<(u64, u64, Perm)> {
        let mut r = vec![
            (0, NULL_GUARD_END, Perm::Unmapped),
            (NULL_GUARD_END, BOOT_INFO_ADDR, Perm::Supervisor),
            (
                BOOT_INFO_ADDR,
                BOOT_INFO_ADDR + BOOT_INFO_SIZE,
                Perm::UserRead,
            ),
        ];
        let mut cursor = VMM_AREA_END;
        for s in &self.segments {
            if s.start > cursor {
                r.push((cursor, s.start, Perm::Unmapped));
            }
            let perm = match (s.perms.exec, s.perms.write) {
                (true, _) => Perm::UserExec,
                (false, true) => Perm::UserWrite,
                (false, false) => Perm::UserRead,
            };
            r.push((s.start, s.end, perm));
            cursor = s.end;
        }
        if self.image_end > cursor {
            r.push((cursor, self.image_end, Perm::Unmapped));
        }
        let guard = self.stack_guard();
        r.push((self.heap_start, guard.start, Perm::UserWrite));
        r.push((guard.start, guard.end, Perm::Unmapped));
        r.push((self.stack_bottom, self.stack_top, Perm::UserWrite));
        r.push((self.mem_size, SHARED_BASE, Perm::UserWrite));
        r.push((SHARED_BASE, SHARED_BASE + self.shared_size, Perm::UserWrite));
        if self.span_end() > SHARED_BASE + self.shared_size {
            r.push((
                SHARED_BASE + self.shared_size,
                self.span_end(),
                Perm::Unmapped,
            ));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::SegmentPerms;

    #[test]
    fn ranges_are_contiguous_and_cover_the_span() {
        let segs = vec![
            Segment {
                start: 0x10_0000,
                end: 0x10_4000,
                perms: SegmentPerms {
                    write: false,
                    exec: true,
                },
            },
            Segment {
                start: 0x10_5000,
                end: 0x10_6000,
                perms: SegmentPerms {
                    write: true,
                    exec: false,
                },
            },
        ];
        let l = GuestLayout::new(64 << 20, segs, 0x10_6000, 16 << 20);
        let r = l.ranges();
        assert_eq!(r[0].0, 0);
        for w in r.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{r:x?}");
        }
        assert_eq!(r.last().unwrap().1, l.span_end());
        assert!(r.contains(&(0x10_4000, 0x10_5000, Perm::Unmapped)));
        assert_eq!(l.stack_guard(), (63 << 20) - 0x1000..63 << 20);
    }
}
