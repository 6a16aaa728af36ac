//! Where the monitor puts its own structures inside the VMM area
//! ([`flexos_abi::VMM_AREA_START`] .. [`flexos_abi::BOOT_INFO_ADDR`]), how private memory
//! is split between the low region and the data window, and the permission map of a
//! compartment's whole address space.

use std::ops::Range;

use flexos_abi::{
    BOOT_INFO_ADDR, BOOT_INFO_SIZE, DATA_WINDOW_BASE, LARGE_PAGE_SIZE, MAIN_STACK_SIZE,
    NULL_GUARD_END, PRIVATE_MEM_LIMIT, SHARED_BASE, STACK_GUARD_SIZE, VMM_AREA_END,
};

use super::image_segment::Segment;
use crate::error::{Result, VmmError};

/// Global descriptor table (7 slots: null, kernel code/data, user data/code, TSS).
pub const GDT_ADDR: u64 = 0x1000;
/// Task state segment (holds the IST stack pointers and the I/O bitmap).
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

const MIB: u64 = 1 << 20;
/// The data window holds the stack, its guard, and at least this much heap.
const MIN_HEAP: u64 = LARGE_PAGE_SIZE;

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

/// How every compartment's private memory is split; the same for all of them.
///
/// Private memory (`--mem`) is a low region from guest-physical 0 (VMM area and image,
/// rounded up to 2 MiB) plus a data window (heap, guard page, stack). Compartment k's
/// window is at `DATA_WINDOW_BASE + k * stride`, so windows never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub mem_size: u64,
    pub low_size: u64,
    pub data_size: u64,
    pub stride: u64,
    pub compartments: u32,
}

impl MemoryPlan {
    /// The first address an image may not reach with `mem_size` bytes of private memory.
    pub fn image_limit(mem_size: u64) -> u64 {
        let need = MAIN_STACK_SIZE + STACK_GUARD_SIZE + MIN_HEAP;
        let limit = mem_size.saturating_sub(need) / LARGE_PAGE_SIZE * LARGE_PAGE_SIZE;
        limit.min(DATA_WINDOW_BASE)
    }

    /// Splits `mem_size` for an image ending at `image_end` (already checked against
    /// [`Self::image_limit`]) and checks that `compartments` windows fit.
    pub fn new(mem_size: u64, image_end: u64, compartments: u32) -> Result<Self> {
        let low_size = image_end.next_multiple_of(LARGE_PAGE_SIZE);
        let data_size = mem_size.saturating_sub(low_size);
        let stride = data_size.next_multiple_of(LARGE_PAGE_SIZE);
        let windows_end = DATA_WINDOW_BASE + stride * compartments as u64;
        if low_size > Self::image_limit(mem_size) || windows_end > PRIVATE_MEM_LIMIT {
            let per = (PRIVATE_MEM_LIMIT - DATA_WINDOW_BASE) / compartments.max(1) as u64;
            return Err(VmmError::Usage(format!(
                "--mem {} with {compartments} compartment(s): the data windows do not fit below {PRIVATE_MEM_LIMIT:#x}; give at most {} MiB per compartment",
                mem_size / MIB,
                (per + low_size) / MIB
            )));
        }
        Ok(MemoryPlan {
            mem_size,
            low_size,
            data_size,
            stride,
            compartments,
        })
    }

    /// Compartment `id`'s data window.
    pub fn data_window(&self, id: u32) -> Range<u64> {
        let base = DATA_WINDOW_BASE + self.stride * id as u64;
        base..base + self.data_size
    }

    /// Which compartment's data window holds `gpa`, if any.
    pub fn window_owner(&self, gpa: u64) -> Option<u32> {
        (0..self.compartments).find(|&c| self.data_window(c).contains(&gpa))
    }
}

/// One contiguous run of shared pages a compartment can reach, as it is mapped into
/// its VM: guest-physical range and whether the guest may write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMapping {
    pub gpa: Range<u64>,
    pub writable: bool,
}

/// One compartment's address space: image, heap, guard, stack, shared region.
#[derive(Clone, Debug)]
pub struct GuestLayout {
    pub plan: MemoryPlan,
    pub segments: Vec<Segment>,
    pub image_end: u64,
    pub data: Range<u64>,
    pub heap_start: u64,
    pub heap_end: u64,
    pub stack_bottom: u64,
    pub stack_top: u64,
    /// The parts of the shared region this compartment can reach (sorted).
    pub shared_maps: Vec<SharedMapping>,
    pub shared_size: u64,
}

impl GuestLayout {
    pub fn new(
        plan: MemoryPlan,
        id: u32,
        segments: Vec<Segment>,
        image_end: u64,
        shared_maps: Vec<SharedMapping>,
        shared_size: u64,
    ) -> Self {
        let data = plan.data_window(id);
        let stack_top = data.end;
        let stack_bottom = stack_top - MAIN_STACK_SIZE;
        GuestLayout {
            plan,
            segments,
            image_end,
            heap_start: data.start,
            heap_end: stack_bottom - STACK_GUARD_SIZE,
            data,
            stack_bottom,
            stack_top,
            shared_maps,
            shared_size,
        }
    }

    /// The guard page below the main stack.
    pub fn stack_guard(&self) -> Range<u64> {
        self.stack_bottom - STACK_GUARD_SIZE..self.stack_bottom
    }

    /// The shared region.
    pub fn shared(&self) -> Range<u64> {
        SHARED_BASE..SHARED_BASE + self.shared_size
    }

    /// Memory the guest may name in hypercalls: boot info and image, its data window,
    /// the shared region.
    pub fn user_ranges(&self) -> [Range<u64>; 3] {
        [
            BOOT_INFO_ADDR..self.image_end,
            self.data.clone(),
            self.shared(),
        ]
    }

    /// End of the address space the page tables describe (shared region rounded to 1 GiB).
    pub fn span_end(&self) -> u64 {
        SHARED_BASE + self.shared_size.next_multiple_of(1 << 30)
    }

    /// The permission of every address in `0 .. span_end()`, as sorted, contiguous ranges.
    ///
    /// Everything below the shared region that is neither this compartment's memory nor
    /// its devices' is mapped user read/write although nothing backs it: an access there
    /// (another compartment's data window, say) leaves the guest as an MMIO exit the
    /// monitor reports as an isolation violation, naming the address.
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
        // The rest of the low region is backed but unused: unmapped, so stray pointers
        // into it fault.
        r.push((cursor, self.plan.low_size, Perm::Unmapped));
        r.push((self.plan.low_size, self.data.start, Perm::UserWrite));
        let guard = self.stack_guard();
        r.push((self.heap_start, guard.start, Perm::UserWrite));
        r.push((guard.start, guard.end, Perm::Unmapped));
        r.push((self.stack_bottom, self.stack_top, Perm::UserWrite));
        r.push((self.data.end, SHARED_BASE, Perm::UserWrite));
        // The shared parts this compartment reaches, read-only where it is not the
        // writer; the rest of the region (other pairs' channels) is unbacked like the
        // space above, so an access there is reported as an isolation violation.
        let mut cursor = SHARED_BASE;
        for m in &self.shared_maps {
            r.push((cursor, m.gpa.start, Perm::UserWrite));
            let perm = if m.writable {
                Perm::UserWrite
            } else {
                Perm::UserRead
            };
            r.push((m.gpa.start, m.gpa.end, perm));
            cursor = m.gpa.end;
        }
        r.push((cursor, SHARED_BASE + self.shared_size, Perm::UserWrite));
        if self.span_end() > SHARED_BASE + self.shared_size {
            r.push((
                SHARED_BASE + self.shared_size,
                self.span_end(),
                Perm::Unmapped,
            ));
        }
        r.retain(|&(start, end, _)| start < end);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::image_segment::SegmentPerms;

    fn segs() -> Vec<Segment> {
        vec![
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
        ]
    }

    #[test]
    fn ranges_are_contiguous_and_cover_the_span() {
        let plan = MemoryPlan::new(64 << 20, 0x10_6000, 2).unwrap();
        for id in 0..2 {
            let maps = vec![
                SharedMapping {
                    gpa: SHARED_BASE..SHARED_BASE + 0x1000,
                    writable: false,
                },
                SharedMapping {
                    gpa: SHARED_BASE + 0x3000..SHARED_BASE + 0x5000,
                    writable: true,
                },
            ];
            let l = GuestLayout::new(plan, id, segs(), 0x10_6000, maps, 16 << 20);
            let r = l.ranges();
            assert!(r.contains(&(SHARED_BASE, SHARED_BASE + 0x1000, Perm::UserRead)));
            assert!(r.contains(&(SHARED_BASE + 0x1000, SHARED_BASE + 0x3000, Perm::UserWrite)));
            assert_eq!(r[0].0, 0);
            for w in r.windows(2) {
                assert_eq!(w[0].1, w[1].0, "{r:x?}");
            }
            assert_eq!(r.last().unwrap().1, l.span_end());
            assert!(r.contains(&(0x10_4000, 0x10_5000, Perm::Unmapped)));
        }
    }

    #[test]
    fn data_windows_are_disjoint_and_sized() {
        let plan = MemoryPlan::new(64 << 20, 0x10_6000, 3).unwrap();
        assert_eq!(plan.low_size, 2 << 20);
        assert_eq!(plan.data_size, 62 << 20);
        let w: Vec<_> = (0..3).map(|c| plan.data_window(c)).collect();
        assert_eq!(w[0].start, DATA_WINDOW_BASE);
        assert!(w[0].end <= w[1].start && w[1].end <= w[2].start);
        assert_eq!(plan.window_owner(w[1].start + 5), Some(1));
        assert_eq!(plan.window_owner(0x10_0000), None);
        let l = GuestLayout::new(plan, 1, segs(), 0x10_6000, Vec::new(), 16 << 20);
        assert_eq!(l.stack_top, w[1].end);
        assert_eq!(
            l.stack_guard(),
            w[1].end - MAIN_STACK_SIZE - 0x1000..w[1].end - MAIN_STACK_SIZE
        );
    }

    #[test]
    fn too_much_memory_for_the_windows_is_refused() {
        assert!(MemoryPlan::new(1024 << 20, 0x10_6000, 4).is_err());
        assert!(MemoryPlan::new(768 << 20, 0x10_6000, 4).is_ok());
        assert!(MemoryPlan::new(3072 << 20, 0x10_6000, 1).is_ok());
    }
}
