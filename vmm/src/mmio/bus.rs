//! The device windows as the vCPU loop sees them: which compartment owns which window,
//! what memory its device may touch, and where an owner's MMIO exit goes.
//!
//! Device `i` of a run has the window `MMIO_BASE + i * MMIO_WINDOW_SIZE`. No memory slot
//! backs it, so every access exits to the monitor: in the owner's VM it reaches the
//! device's transport ([`MmioBus::lookup`]), in any other VM it is an isolation
//! violation that names the window ([`Window::describe`]). QueueNotify writes never exit
//! at all: they are ioeventfds that wake the device thread in the kernel.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use devices::virtio::mmio::MmioTransport;
use devices::virtio::VirtioDevice;
use flexos_abi::{DeviceInfo, DEVICE_BLOCK, DEVICE_NET, MMIO_BASE, MMIO_WINDOW_SIZE};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::layout::SharedMapping;
use crate::error::Result;
use crate::memory::MemoryError;

/// A device's register file as the vCPU loop drives it. Offsets are relative to the
/// window; the access size is `data.len()`.
pub trait MmioDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
    /// Stops the device (and joins its thread) at the end of the run.
    fn stop(&mut self);
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        MmioTransport::read(self, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        MmioTransport::write(self, offset, data);
    }
    fn stop(&mut self) {
        MmioTransport::stop(self);
    }
}

/// A device shared by the owner's vCPU thread (register accesses) and the monitor
/// (stopping it when the run ends); the device's own thread runs its queues.
pub type DeviceHandle = Arc<Mutex<dyn MmioDevice>>;

/// Locks a device even if a vCPU thread panicked while holding it: the register file
/// is left in a state the driver can reset, and the monitor must still stop it.
pub fn lock(device: &DeviceHandle) -> std::sync::MutexGuard<'_, dyn MmioDevice + 'static> {
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A device window as every compartment knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub range: Range<u64>,
    /// virtio device id ([`DEVICE_BLOCK`], [`DEVICE_NET`]).
    pub kind: u32,
    /// The compartment that owns the device.
    pub owner: u32,
}

impl Window {
    /// The window of device `index` of the run.
    pub fn new(index: u32, kind: u32, owner: u32) -> Window {
        let base = MMIO_BASE + u64::from(index) * MMIO_WINDOW_SIZE;
        Window {
            range: base..base + MMIO_WINDOW_SIZE,
            kind,
            owner,
        }
    }

    /// What the owner's boot info says about it.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            kind: self.kind,
            reserved: 0,
            mmio_base: self.range.start,
            mmio_size: self.range.end - self.range.start,
        }
    }

    /// The window in words for a report, with compartment names from `names`.
    pub fn describe(&self, names: &[String]) -> String {
        let kind = match self.kind {
            DEVICE_BLOCK => "block device",
            DEVICE_NET => "network device",
            _ => "device",
        };
        let name = names.get(self.owner as usize).map_or("?", String::as_str);
        format!(
            "the MMIO window of the {kind} owned by compartment {} ({name})",
            self.owner
        )
    }
}

/// The windows whose devices one compartment owns.
#[derive(Default)]
pub struct MmioBus {
    devices: Vec<(Range<u64>, DeviceHandle)>,
}

impl MmioBus {
    pub fn add(&mut self, window: Range<u64>, device: DeviceHandle) {
        self.devices.push((window, device));
    }

    /// The device an access of `len` bytes at `gpa` is for, and its offset in the
    /// window; `None` (a violation) unless the whole access lies in one owned window.
    pub fn lookup(&self, gpa: u64, len: usize) -> Option<(&DeviceHandle, u64)> {
        let last = gpa.checked_add(u64::try_from(len).ok()?.checked_sub(1)?)?;
        self.devices
            .iter()
            .find(|(w, _)| w.contains(&gpa) && w.contains(&last))
            .map(|(w, d)| (d, gpa - w.start))
    }
}

/// The memory a device of the compartment whose memory is `mem` may read and write:
/// its data window and the shared parts it may write, the same host memory as the
/// guest's. Never the low region (page tables, GDT, trampolines, boot info, the
/// image) nor a shared page the guest may only read: a descriptor pointing there is
/// outside the device's memory and refused.
pub fn device_memory(
    mem: &GuestMemoryMmap,
    data: &Range<u64>,
    shared: &[SharedMapping],
) -> Result<GuestMemoryMmap> {
    let allowed = |start: u64| {
        start == data.start || shared.iter().any(|m| m.writable && m.gpa.start == start)
    };
    let mut regions = Vec::new();
    for region in mem.iter().filter(|r| allowed(r.start_addr().0)) {
        // remove_region hands back the region's Arc: the device shares the guest's
        // mapping instead of mapping the memory a second time.
        let (_, arc) = mem
            .remove_region(GuestAddress(region.start_addr().0), region.len())
            .map_err(|source| MemoryError::Assemble {
                what: "device memory",
                source,
            })?;
        regions.push(arc);
    }
    GuestMemoryMmap::from_arc_regions(regions).map_err(|source| {
        MemoryError::Assemble {
            what: "device memory",
            source,
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::MemoryPlan;
    use crate::memory::{compartment_memory, SharedRegion};
    use flexos_abi::SHARED_BASE;
    use vm_memory::Bytes;

    /// Records what the vCPU loop passed it.
    #[derive(Default)]
    struct Probe(Vec<(u64, usize)>);
    impl MmioDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            self.0.push((offset, data.len()));
            data.fill(0xab);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.len()));
        }
        fn stop(&mut self) {}
    }

    #[test]
    fn windows_follow_the_abi_and_are_named_in_reports() {
        let w = Window::new(1, DEVICE_BLOCK, 1);
        assert_eq!(w.range, 0xD000_1000..0xD000_2000);
        let info = w.info();
        assert_eq!(
            (info.kind, info.mmio_base, info.mmio_size),
            (DEVICE_BLOCK, 0xD000_1000, 0x1000)
        );
        let names = ["app".to_string(), "fs".to_string()];
        assert_eq!(
            w.describe(&names),
            "the MMIO window of the block device owned by compartment 1 (fs)"
        );
    }

    #[test]
    fn only_whole_accesses_inside_an_owned_window_reach_its_device() {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let mut bus = MmioBus::default();
        let w = Window::new(0, DEVICE_BLOCK, 0).range;
        bus.add(w.clone(), probe.clone());
        let (dev, offset) = bus.lookup(MMIO_BASE + 0x50, 4).unwrap();
        assert_eq!(offset, 0x50);
        let mut data = [0u8; 4];
        lock(dev).read(offset, &mut data);
        assert_eq!(data, [0xab; 4]);
        assert_eq!(bus.lookup(w.end - 4, 4).unwrap().1, 0xffc);
        assert!(bus.lookup(w.end - 2, 4).is_none(), "straddles the end");
        assert!(
            bus.lookup(w.end, 4).is_none(),
            "the next window is not owned"
        );
        assert!(bus.lookup(MMIO_BASE - 4, 4).is_none());
        assert!(bus.lookup(MMIO_BASE, 0).is_none());
        assert!(bus.lookup(u64::MAX, 8).is_none());
        assert!(MmioBus::default().lookup(MMIO_BASE, 4).is_none());
        assert_eq!(probe.lock().unwrap().0, [(0x50, 4)]);
    }

    #[test]
    fn device_memory_is_the_data_window_and_writable_shared_pages_only() {
        let shared = SharedRegion::new(2 << 20, 2).unwrap();
        let plan = MemoryPlan::new(8 << 20, 0x10_1000, 2).unwrap();
        let mem = compartment_memory(&plan, 1, &shared).unwrap();
        let maps = shared.mappings(1);
        let dev = device_memory(&mem, &plan.data_window(1), &maps).unwrap();
        // The same memory: a device write is what the guest reads.
        let data = plan.data_window(1).start;
        dev.write_obj(0x5eed_u64, GuestAddress(data + 8)).unwrap();
        assert_eq!(mem.read_obj::<u64>(GuestAddress(data + 8)).unwrap(), 0x5eed);
        // Page tables, boot info and the image are out of reach.
        for low in [0x1000, 0x1_0000, flexos_abi::BOOT_INFO_ADDR, 0x10_0000] {
            assert!(dev.read_obj::<u64>(GuestAddress(low)).is_err(), "{low:#x}");
            assert!(dev.write_obj(1u64, GuestAddress(low)).is_err(), "{low:#x}");
        }
        for m in &maps {
            let ok = dev.read_obj::<u64>(GuestAddress(m.gpa.start)).is_ok();
            assert_eq!(ok, m.writable, "{m:x?}");
        }
        assert!(
            maps.iter().any(|m| !m.writable),
            "the header page is read-only"
        );
        assert!(dev.read_obj::<u64>(GuestAddress(SHARED_BASE)).is_err());
        assert!(dev
            .read_obj::<u64>(GuestAddress(plan.data_window(0).start))
            .is_err());
    }
}
