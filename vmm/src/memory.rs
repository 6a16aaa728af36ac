//! Guest memory: per compartment a low region at guest-physical 0 (VMM area and image)
//! and a data window (heap and stacks, see `arch::layout::MemoryPlan`), plus the shared
//! region at [`SHARED_BASE`]; each a host mapping wrapped in `vm-memory` types so that
//! every access the monitor makes is bounds-checked.
//!
//! Private memory is anonymous and THP-advised: with 4 KiB host pages the guest's first
//! touch of each page costs ~4 us on this host, with 2 MiB pages almost nothing. The
//! shared region is a memfd; each compartment maps only the parts it is a party to.

use std::fs::File;
use std::ops::Range;
use std::os::fd::FromRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use flexos_abi::{DATA_WINDOW_BASE, MIN_PRIVATE_MEM, PRIVATE_MEM_LIMIT, SHARED_BASE, SHARED_MAX};
use rpc_shm::{Access, Layout, PartKind};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress, MmapRegion,
};

use crate::arch::layout::{MemoryPlan, SharedMapping};
use crate::error::{Result, VmmError};

/// Why the monitor could not build or write memory for a run: the host's fault or the
/// monitor's, never the guest's (exit 71).
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("{bytes} bytes of {what} do not fit this host")]
    TooLarge { what: &'static str, bytes: u64 },
    #[error("cannot map {kib} KiB of {what}: {source}")]
    Map {
        what: &'static str,
        kib: u64,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("{what} overflows the address space")]
    Overflow { what: &'static str },
    #[error("cannot assemble {what}: {source}")]
    Assemble {
        what: &'static str,
        #[source]
        source: vm_memory::GuestRegionCollectionError,
    },
    #[error("cannot create the shared region ({step}): {source}")]
    SharedFile {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {what} at {addr:#x}: {source}")]
    Write {
        what: &'static str,
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    #[error("{0}")]
    Layout(&'static str),
    #[error("the address space ends at {0:#x}, beyond the 512 GiB one page table maps")]
    AddressSpace(u64),
    #[error("host address of a region: {0}")]
    HostAddress(#[source] vm_memory::GuestMemoryError),
    #[error(transparent)]
    Image(#[from] flexos_image::elf::LoadError),
}

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

fn map_anonymous(size: u64, what: &'static str) -> Result<MmapRegion> {
    let len = usize::try_from(size).map_err(|_| MemoryError::TooLarge { what, bytes: size })?;
    let region = MmapRegion::build(
        None,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
    )
    .map_err(|source| MemoryError::Map {
        what,
        kib: size / 1024,
        source,
    })?;
    advise_huge(&region, what);
    Ok(region)
}

fn advise_huge(region: &MmapRegion, what: &str) {
    // SAFETY: the pointer and length describe a mapping we created and still own;
    // madvise only changes how the kernel backs it and cannot invalidate it.
    let rc = unsafe { libc::madvise(region.as_ptr().cast(), region.size(), libc::MADV_HUGEPAGE) };
    if rc != 0 {
        // Not fatal: the kernel may have THP disabled; the guest is then slower to touch
        // memory for the first time, but correct.
        tracing::debug!(
            "madvise(MADV_HUGEPAGE) on {what} failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The shared area: a memfd holding the region, laid out for the run's compartments.
///
/// The monitor keeps one read/write mapping of all of it (to write the header and dead
/// flags); each compartment gets its own mappings of exactly the parts it is a party
/// to (header, state pages, its channels: [`Layout::access`]), so a page it may not
/// reach is simply absent from its guest-physical address space, and a page it may
/// only read is a KVM_MEM_READONLY slot (and a read-only page in its page tables).
pub struct SharedRegion {
    file: Arc<File>,
    region: GuestRegionMmap,
    layout: Layout,
}

impl SharedRegion {
    /// Creates the region for `compartments` compartments and writes the header every
    /// compartment validates before its first gate call.
    pub fn new(size: u64, compartments: u32) -> Result<Self> {
        let layout = Layout::new(size, compartments).map_err(|e| {
            VmmError::Usage(format!(
                "--shared-mem {} MiB for {compartments} compartment(s): {e}",
                size / MIB
            ))
        })?;
        // SAFETY: the name is a valid NUL-terminated string; memfd_create has no other
        // preconditions and returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"flexos-shared".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(MemoryError::SharedFile {
                step: "memfd_create",
                source: std::io::Error::last_os_error(),
            }
            .into());
        }
        // SAFETY: `fd` is a descriptor we just created and nobody else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size)
            .map_err(|source| MemoryError::SharedFile {
                step: "ftruncate",
                source,
            })?;
        let file = Arc::new(file);
        let region = map_shared(&file, 0..size, SHARED_BASE, "shared memory")?;
        region
            .write_slice(&layout.header().to_bytes(), MemoryRegionAddress(0))
            .map_err(|source| MemoryError::Write {
                what: "the shared-region header",
                addr: SHARED_BASE,
                source,
            })?;
        Ok(SharedRegion {
            file,
            region,
            layout,
        })
    }

    pub fn size(&self) -> u64 {
        self.region.len()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Marks `compartment` dead in the header page: peers waiting on it stop waiting.
    pub fn mark_dead(&self, compartment: u32) {
        let at = MemoryRegionAddress(self.layout.dead_flag_offset(compartment));
        if let Err(e) = self.region.store(1u32, at, Ordering::Release) {
            tracing::warn!("cannot mark compartment {compartment} dead: {e}");
        }
    }

    /// Reads the dead flag of `compartment` (for tests and diagnostics).
    #[cfg(test)]
    pub fn is_dead(&self, compartment: u32) -> bool {
        let at = MemoryRegionAddress(self.layout.dead_flag_offset(compartment));
        self.region.load::<u32>(at, Ordering::Acquire).unwrap_or(0) != 0
    }

    /// The shared pages `compartment` can reach, merged into as few mappings (and so
    /// KVM memory slots) as the layout allows.
    pub fn mappings(&self, compartment: u32) -> Vec<SharedMapping> {
        let mut out: Vec<SharedMapping> = Vec::new();
        for part in self.layout.parts() {
            let writable = match self.layout.access(compartment, part.range.start) {
                Access::None => continue,
                Access::Read => false,
                Access::Write => true,
            };
            let gpa = SHARED_BASE + part.range.start..SHARED_BASE + part.range.end;
            match out.last_mut() {
                Some(last) if last.gpa.end == gpa.start && last.writable == writable => {
                    last.gpa.end = gpa.end;
                }
                _ => out.push(SharedMapping { gpa, writable }),
            }
        }
        out
    }

    /// Every part of the region as `compartment` sees it: guest-physical range, its
    /// access ("read-write", "read-only" or "absent") and what the part is.
    pub fn channel_map(
        &self,
        compartment: u32,
        names: &[String],
    ) -> Vec<(Range<u64>, &'static str, String)> {
        self.layout
            .parts()
            .map(|part| {
                let gpa = SHARED_BASE + part.range.start..SHARED_BASE + part.range.end;
                let access = match self.layout.access(compartment, part.range.start) {
                    Access::None => "absent",
                    Access::Read => "read-only",
                    Access::Write => "read-write",
                };
                let what = describe_shared(&self.layout, gpa.start, names).unwrap_or_default();
                (gpa, access, what)
            })
            .collect()
    }

    /// What the shared page at guest-physical `gpa` is: see [`describe_shared`].
    pub fn describe(&self, gpa: u64, names: &[String]) -> Option<String> {
        describe_shared(&self.layout, gpa, names)
    }
}

/// What the shared page at guest-physical `gpa` is, in words for a report, with
/// compartment names from `names`; `None` outside the region.
pub fn describe_shared(layout: &Layout, gpa: u64, names: &[String]) -> Option<String> {
    let offset = gpa
        .checked_sub(SHARED_BASE)
        .filter(|&o| o < layout.region_size())?;
    let name = |c: u32| {
        let n = names.get(c as usize).map(String::as_str).unwrap_or("?");
        format!("compartment {c} ({n})")
    };
    let part = layout.parts().find(|p| p.range.contains(&offset))?;
    Some(match part.kind {
        PartKind::Header => {
            "the shared region's header page (written by the monitor only)".to_string()
        }
        PartKind::State(c) => format!("the state page of {} (written by its owner only)", name(c)),
        PartKind::Channel(a, b) if a == b => format!("the own channel of {}", name(a)),
        PartKind::Channel(a, b) => format!("the channel between {} and {}", name(a), name(b)),
        PartKind::Unused => "unused space at the end of the shared region".to_string(),
    })
}

/// Maps `range` of the memfd read/write and shared at guest-physical `gpa`.
fn map_shared(
    file: &Arc<File>,
    range: Range<u64>,
    gpa: u64,
    what: &'static str,
) -> Result<GuestRegionMmap> {
    let len = range.end - range.start;
    let size = usize::try_from(len).map_err(|_| MemoryError::TooLarge { what, bytes: len })?;
    let mapping = MmapRegion::build(
        Some(FileOffset::from_arc(file.clone(), range.start)),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_NORESERVE,
    )
    .map_err(|source| MemoryError::Map {
        what,
        kib: len / 1024,
        source,
    })?;
    advise_huge(&mapping, what);
    GuestRegionMmap::new(mapping, GuestAddress(gpa))
        .ok_or_else(|| MemoryError::Overflow { what }.into())
}

fn private_region(size: u64, base: u64, what: &'static str) -> Result<Arc<GuestRegionMmap>> {
    let mapping = map_anonymous(size, what)?;
    GuestRegionMmap::new(mapping, GuestAddress(base))
        .map(Arc::new)
        .ok_or_else(|| MemoryError::Overflow { what }.into())
}

/// Builds compartment `id`'s guest memory: low region, data window, and the shared
/// pages it can reach ([`SharedRegion::mappings`]). The monitor's own view of the
/// shared pages is read/write even where the guest's is read-only: the read-only
/// part is enforced in the VM (memory slot flags and page tables).
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
    let mut regions = vec![low, data];
    for m in shared.mappings(id) {
        let range = m.gpa.start - SHARED_BASE..m.gpa.end - SHARED_BASE;
        regions.push(Arc::new(map_shared(
            &shared.file,
            range,
            m.gpa.start,
            "shared memory",
        )?));
    }
    GuestMemoryMmap::from_arc_regions(regions).map_err(|source| {
        MemoryError::Assemble {
            what: "guest memory",
            source,
        }
        .into()
    })
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
    fn a_channel_is_shared_by_its_two_compartments_only() {
        let shared = SharedRegion::new(2 * MIB, 3).unwrap();
        let layout = *shared.layout();
        let plan = MemoryPlan::new(8 * MIB, 0x10_1000, 3).unwrap();
        let mems: Vec<_> = (0..3)
            .map(|c| compartment_memory(&plan, c, &shared).unwrap())
            .collect();
        let ch01 = SHARED_BASE + layout.channel(0, 1).start;
        mems[0]
            .write_obj(0xfeed_u64, GuestAddress(ch01 + 64))
            .unwrap();
        assert_eq!(
            mems[1].read_obj::<u64>(GuestAddress(ch01 + 64)).unwrap(),
            0xfeed
        );
        assert!(
            mems[2].read_obj::<u64>(GuestAddress(ch01 + 64)).is_err(),
            "compartment 2 has no mapping of the channel between 0 and 1"
        );
        // Private memory stays private.
        mems[0].write_obj(7_u64, GuestAddress(0x2000)).unwrap();
        assert_eq!(mems[1].read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 0);
        let (w0, w1) = (plan.data_window(0), plan.data_window(1));
        assert!(mems[0].read_obj::<u64>(GuestAddress(w0.start)).is_ok());
        assert!(mems[0].read_obj::<u64>(GuestAddress(w1.start)).is_err());
        assert_eq!(
            shared.describe(ch01 + 8, &["app".into(), "net".into(), "evil".into()]),
            Some("the channel between compartment 0 (app) and compartment 1 (net)".into())
        );
    }

    #[test]
    fn each_compartment_maps_exactly_its_parts() {
        for n in [1u32, 2, 3, 4, 16] {
            let shared = SharedRegion::new(16 * MIB, n).unwrap();
            let layout = *shared.layout();
            for me in 0..n {
                let maps = shared.mappings(me);
                for w in maps.windows(2) {
                    assert!(w[0].gpa.end <= w[1].gpa.start);
                }
                // Every page of the region: mapped as the layout says, or not at all.
                let mut page = 0;
                while page < layout.region_size() {
                    let gpa = SHARED_BASE + page;
                    let found = maps.iter().find(|m| m.gpa.contains(&gpa));
                    match layout.access(me, page) {
                        Access::None => assert!(found.is_none(), "n {n} me {me} {page:#x}"),
                        Access::Read => assert!(!found.unwrap().writable),
                        Access::Write => assert!(found.unwrap().writable),
                    }
                    page += rpc_shm::PAGE;
                }
                // Header + states before me, my state, states after me, my channels
                // with higher peers (adjacent), one per lower peer.
                assert!(maps.len() <= 4 + me as usize, "n {n} me {me}: {maps:x?}");
            }
        }
    }

    #[test]
    fn memory_slots_per_vm() {
        // Two private slots plus the merged shared mappings; the README quotes these.
        let slots = |n: u32| -> (usize, usize) {
            let shared = SharedRegion::new(16 * MIB, n).unwrap();
            let per_vm: Vec<usize> = (0..n).map(|k| 2 + shared.mappings(k).len()).collect();
            (*per_vm.iter().min().unwrap(), *per_vm.iter().max().unwrap())
        };
        assert_eq!(slots(1), (4, 4));
        assert_eq!(slots(2), (5, 6));
        assert_eq!(slots(4), (6, 8));
        assert_eq!(slots(16), (6, 20));
    }

    #[test]
    fn dead_flags_are_visible_to_every_compartment() {
        let shared = SharedRegion::new(2 * MIB, 3).unwrap();
        let layout = *shared.layout();
        let plan = MemoryPlan::new(8 * MIB, 0x10_1000, 3).unwrap();
        let mem = compartment_memory(&plan, 2, &shared).unwrap();
        let mut header = [0u8; rpc_shm::HEADER_SIZE];
        mem.read_slice(&mut header, GuestAddress(SHARED_BASE))
            .unwrap();
        assert_eq!(
            rpc_shm::Layout::from_header(&rpc_shm::Header::from_bytes(&header), 2 * MIB),
            Ok(layout)
        );
        assert!(!shared.is_dead(1));
        shared.mark_dead(1);
        assert!(shared.is_dead(1));
        let flag: u32 = mem
            .read_obj(GuestAddress(SHARED_BASE + layout.dead_flag_offset(1)))
            .unwrap();
        assert_eq!(flag, 1);
        assert!(SharedRegion::new(MIB, 17).is_err(), "at most 16");
        assert_eq!(mem.num_regions(), 2 + shared.mappings(2).len());
    }

    #[test]
    fn huge_shared_sizes_do_not_overflow() {
        assert!(shared_size_from_mib(u64::MAX / MIB + 1).is_err());
        assert!(shared_size_from_mib(17_592_186_044_417).is_err());
    }
}
