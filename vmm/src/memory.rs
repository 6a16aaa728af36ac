//! Guest memory: per compartment a low region at guest-physical 0 (VMM area and image)
//! and a data window (heap and stacks, see `arch::layout::MemoryPlan`), plus the shared
//! region at [`SHARED_BASE`]; each a host mapping wrapped in `vm-memory` types so that
//! every access the monitor makes is bounds-checked.
//!
//! Private memory is anonymous and THP-advised: with 4 KiB host pages the guest's first
//! touch of each page costs ~4 us on this host, with 2 MiB pages almost nothing. The
//! shared region is one `MAP_SHARED` mapping inserted into every compartment's memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use flexos_abi::{DATA_WINDOW_BASE, MIN_PRIVATE_MEM, PRIVATE_MEM_LIMIT, SHARED_BASE, SHARED_MAX};
use rpc_shm::Layout;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress,
    MmapRegion,
};

use crate::arch::layout::MemoryPlan;
use crate::error::{Result, VmmError};

const MIB: u64 = 1 << 20;

/// Checks `--mem` (MiB) for `compartments` compartments against the memory map and what
/// the host can give; returns bytes.
pub fn private_size_from_mib(mib: u64, compartments: u32) -> Result<u64> {
    let limit_mib = (PRIVATE_MEM_LIMIT - DATA_WINDOW_BASE) / MIB;
    if mib == 0 {
        return Err(VmmError::Usage(format!(
            "--mem 0: a compartment needs private memory; give at least {} MiB",
            MIN_PRIVATE_MEM / MIB
        )));
    }
    if mib < MIN_PRIVATE_MEM / MIB {
        return Err(VmmError::Usage(format!(
            "--mem {mib}: too small; give at least {} MiB",
            MIN_PRIVATE_MEM / MIB
        )));
    }
    if mib > limit_mib {
        return Err(VmmError::Usage(format!(
            "--mem {mib}: private memory must fit below the MMIO windows at {PRIVATE_MEM_LIMIT:#x}; give at most {limit_mib} MiB"
        )));
    }
    if let Some(avail) = host_available_bytes() {
        if mib * MIB * compartments as u64 > avail {
            return Err(VmmError::Usage(format!(
                "--mem {mib} for {compartments} compartment(s): more than this host can give ({} MiB available); give less",
                avail / MIB
            )));
        }
    }
    Ok(mib * MIB)
}

/// Checks `--shared-mem` (MiB); returns bytes.
pub fn shared_size_from_mib(mib: u64) -> Result<u64> {
    if mib == 0 || mib > SHARED_MAX / MIB {
        return Err(VmmError::Usage(format!(
            "--shared-mem {mib}: give 1..={} MiB",
            SHARED_MAX / MIB
        )));
    }
    Ok(mib * MIB)
}

/// `MemAvailable` from /proc/meminfo, if it can be read.
fn host_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn map_anonymous(size: u64, shared: bool, what: &str) -> Result<MmapRegion> {
    let share = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    let len = usize::try_from(size)
        .map_err(|_| VmmError::Memory(format!("{size} bytes of {what} do not fit this host")))?;
    let region = MmapRegion::build(
        None,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        share | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
    )
    .map_err(|e| VmmError::Memory(format!("cannot map {} MiB of {what}: {e}", size / MIB)))?;
    // SAFETY: the pointer and length describe the mapping we just created and still own;
    // madvise only changes how the kernel backs it and cannot invalidate it.
    let rc = unsafe { libc::madvise(region.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        // Not fatal: the kernel may have THP disabled; the guest is then slower to touch
        // memory for the first time, but correct.
        tracing::debug!(
            "madvise(MADV_HUGEPAGE) on {what} failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(region)
}

/// The region all compartments share.
pub struct SharedRegion {
    region: Arc<GuestRegionMmap>,
}

impl SharedRegion {
    pub fn new(size: u64) -> Result<Self> {
        let mapping = map_anonymous(size, true, "shared memory")?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(SHARED_BASE))
            .ok_or_else(|| VmmError::Memory("shared region overflows the address space".into()))?;
        Ok(SharedRegion {
            region: Arc::new(region),
        })
    }

    pub fn size(&self) -> u64 {
        self.region.len()
    }

    /// Lays the region out for `compartments` and writes the header every compartment
    /// validates before its first gate call.
    pub fn init(&self, compartments: u32) -> Result<Layout> {
        let layout = Layout::new(self.size(), compartments).map_err(|e| {
            VmmError::Usage(format!(
                "--shared-mem {} MiB for {compartments} compartment(s): {e}",
                self.size() / MIB
            ))
        })?;
        self.region
            .write_slice(&layout.header().to_bytes(), MemoryRegionAddress(0))
            .map_err(|e| VmmError::Memory(format!("writing the shared-region header: {e}")))?;
        Ok(layout)
    }

    /// Marks `compartment` dead in the region header: peers waiting on it stop waiting.
    pub fn mark_dead(&self, layout: &Layout, compartment: u32) {
        let at = MemoryRegionAddress(layout.dead_flag_offset(compartment));
        if let Err(e) = self.region.store(1u32, at, Ordering::Release) {
            tracing::warn!("cannot mark compartment {compartment} dead: {e}");
        }
    }

    /// Reads the dead flag of `compartment` (for tests and diagnostics).
    #[cfg(test)]
    pub fn is_dead(&self, layout: &Layout, compartment: u32) -> bool {
        let at = MemoryRegionAddress(layout.dead_flag_offset(compartment));
        self.region.load::<u32>(at, Ordering::Acquire).unwrap_or(0) != 0
    }
}

fn private_region(size: u64, base: u64, what: &str) -> Result<Arc<GuestRegionMmap>> {
    let mapping = map_anonymous(size, false, what)?;
    GuestRegionMmap::new(mapping, GuestAddress(base))
        .map(Arc::new)
        .ok_or_else(|| VmmError::Memory(format!("{what} overflows the address space")))
}

/// Builds compartment `id`'s guest memory: low region, data window, shared region.
pub fn compartment_memory(
    plan: &MemoryPlan,
    id: u32,
    shared: &SharedRegion,
) -> Result<GuestMemoryMmap> {
    let low = private_region(plan.low_size, 0, "the low region")?;
    let data = private_region(
        plan.data_size,
        plan.data_window(id).start,
        "the data window",
    )?;
    GuestMemoryMmap::from_arc_regions(vec![low, data, shared.region.clone()])
        .map_err(|e| VmmError::Memory(format!("cannot assemble guest memory: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn mem_sizes_are_checked() {
        assert!(private_size_from_mib(0, 1).is_err());
        assert!(private_size_from_mib(1, 1).is_err());
        assert!(private_size_from_mib(PRIVATE_MEM_LIMIT / MIB, 1).is_err());
        assert!(private_size_from_mib(1 << 30, 1).is_err());
        assert_eq!(private_size_from_mib(64, 1).unwrap(), 64 * MIB);
        assert!(shared_size_from_mib(0).is_err());
        assert!(shared_size_from_mib(2048).is_err());
    }

    #[test]
    fn shared_region_is_shared_between_memories() {
        let shared = SharedRegion::new(2 * MIB).unwrap();
        let plan = MemoryPlan::new(8 * MIB, 0x10_1000, 2).unwrap();
        let a = compartment_memory(&plan, 0, &shared).unwrap();
        let b = compartment_memory(&plan, 1, &shared).unwrap();
        a.write_obj(0xfeed_u64, GuestAddress(SHARED_BASE + 64))
            .unwrap();
        assert_eq!(
            b.read_obj::<u64>(GuestAddress(SHARED_BASE + 64)).unwrap(),
            0xfeed
        );
        a.write_obj(7_u64, GuestAddress(0x2000)).unwrap();
        assert_eq!(b.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 0);
        assert_eq!(a.num_regions(), 3);
        let (w0, w1) = (plan.data_window(0), plan.data_window(1));
        assert!(a.read_obj::<u64>(GuestAddress(w0.start)).is_ok());
        assert!(
            a.read_obj::<u64>(GuestAddress(w1.start)).is_err(),
            "not a's memory"
        );
        assert!(b.read_obj::<u64>(GuestAddress(w1.end - 8)).is_ok());
    }

    #[test]
    fn header_and_dead_flags_are_visible_to_every_compartment() {
        let shared = SharedRegion::new(2 * MIB).unwrap();
        let layout = shared.init(3).unwrap();
        let plan = MemoryPlan::new(8 * MIB, 0x10_1000, 3).unwrap();
        let mem = compartment_memory(&plan, 2, &shared).unwrap();
        let mut header = [0u8; rpc_shm::HEADER_SIZE];
        mem.read_slice(&mut header, GuestAddress(SHARED_BASE))
            .unwrap();
        assert_eq!(
            rpc_shm::Layout::from_header(&rpc_shm::Header::from_bytes(&header), 2 * MIB),
            Ok(layout)
        );
        assert!(!shared.is_dead(&layout, 1));
        shared.mark_dead(&layout, 1);
        assert!(shared.is_dead(&layout, 1));
        let flag: u32 = mem
            .read_obj(GuestAddress(SHARED_BASE + layout.dead_flag_offset(1)))
            .unwrap();
        assert_eq!(flag, 1);
        assert!(
            SharedRegion::new(MIB).unwrap().init(17).is_err(),
            "at most 16"
        );
    }

    #[test]
    fn huge_shared_sizes_do_not_overflow() {
        assert!(shared_size_from_mib(u64::MAX / MIB + 1).is_err());
        assert!(shared_size_from_mib(17_592_186_044_417).is_err());
    }
}
