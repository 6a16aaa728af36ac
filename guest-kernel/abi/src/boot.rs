//! The boot-info block, written by the monitor at [`crate::BOOT_INFO_ADDR`] and passed to
//! the image entry point in RDI.

/// "FLEXBOOT" in little-endian ASCII.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"FLEXBOOT");
/// Bumped on every incompatible change to [`BootInfo`].
pub const BOOT_VERSION: u32 = 4;

/// Boot flag: the monitor runs with `--timings`; the guest reports reaching `main`.
pub const BOOT_FLAG_TIMINGS: u32 = 1 << 0;
/// Boot flag: a compartment of this run (the one hosting the block driver, maybe not
/// this one) owns a block device. A component told not to use the disk (vfs with the
/// guest argument `ramfs`) can then say the disk is unused without calling the driver.
pub const BOOT_FLAG_DISK: u32 = 1 << 1;

/// Maximum number of components an image may declare.
pub const MAX_COMPONENTS: usize = 32;
/// Maximum number of compartments: the width of a split in the component table
/// ([`crate::Split::names`]) and the bound on [`BootInfo::compartment_count`].
///
/// Defined by rpc-shm (`rpc_shm::MAX_COMPARTMENTS`: the shared region is laid out for
/// that many). This crate depends on nothing, so it repeats the value rather than
/// importing it; the test `max_compartments_is_rpc_shms` (rpc-shm is a
/// dev-dependency) and a const assertion in the guest kernel check that they agree.
pub const MAX_COMPARTMENTS: usize = 16;
/// Maximum length of a compartment name, in bytes.
pub const NAME_LEN: usize = 16;
/// Maximum number of devices one compartment owns.
pub const MAX_DEVICES: usize = 4;
/// Size of one device's virtio-mmio window; device `i` of a run sits at
/// `MMIO_BASE + i * MMIO_WINDOW_SIZE` in the compartment that owns it.
pub const MMIO_WINDOW_SIZE: u64 = crate::virtio_mmio::WINDOW_SIZE;
/// virtio device id of a network device ([`DeviceInfo::kind`]).
pub const DEVICE_NET: u32 = 1;
/// virtio device id of a block device ([`DeviceInfo::kind`]).
pub const DEVICE_BLOCK: u32 = 2;

/// A device this compartment owns: a virtio-mmio (version 2) window. The guest drives
/// it by polling its used rings; it takes no interrupts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// virtio device id: [`DEVICE_NET`], [`DEVICE_BLOCK`].
    pub kind: u32,
    pub reserved: u32,
    /// Guest-physical address of its MMIO window (identity-mapped, uncached).
    pub mmio_base: u64,
    pub mmio_size: u64,
}

/// Monitor -> guest: everything the guest needs to know before its first instruction.
///
/// The guest arguments follow the block inside the boot-info window: `argc` strings,
/// each NUL-terminated, starting at `args_addr`, `args_len` bytes in total.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    pub magic: u64,
    pub version: u32,
    pub flags: u32,
    /// This compartment's id, 0-based.
    pub compartment_id: u32,
    /// How many compartments run this image.
    pub compartment_count: u32,
    /// This compartment's name (from the placement), NUL-padded.
    pub compartment_name: [u8; NAME_LEN],
    /// Private memory size in bytes: the low region (VMM area and image, from 0) plus
    /// the data window (heap and stack, see [`crate::DATA_WINDOW_BASE`]).
    pub mem_size: u64,
    /// First byte after the loaded image (page-aligned).
    pub image_end: u64,
    /// The private heap: `heap_start .. heap_start + heap_size`.
    pub heap_start: u64,
    pub heap_size: u64,
    /// Top (exclusive) of the main stack; RSP starts here.
    pub stack_top: u64,
    pub stack_size: u64,
    /// The shared region, at the same address in every compartment; only the parts this
    /// compartment is a party to are mapped (rpc-shm's `Layout::access`).
    pub shared_base: u64,
    pub shared_size: u64,
    /// Guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
    pub tsc_khz: u64,
    /// Guest TSC value the monitor read just before starting the vCPU.
    pub tsc_at_start: u64,
    /// Guest arguments: `argc` NUL-terminated strings packed at `args_addr`.
    pub argc: u32,
    /// Number of valid entries in `placement`.
    pub component_count: u32,
    pub args_addr: u64,
    pub args_len: u64,
    /// Component index -> compartment id that hosts it.
    pub placement: [u8; MAX_COMPONENTS],
    /// Number of valid entries in `devices`.
    pub device_count: u32,
    /// Host CPUs the monitor's threads may run on (0: unknown). With fewer CPUs than
    /// compartments a waiting compartment's spin takes a CPU from the peer it waits
    /// for, so the guest spins for less before it sleeps (rpc-shm's
    /// `IdlePolicy::for_host`).
    pub host_cpus: u32,
    /// The devices this compartment owns (the monitor attaches a device to the
    /// compartment hosting its driver component).
    pub devices: [DeviceInfo; MAX_DEVICES],
    /// Rounds a waiting compartment spins before it sleeps, as the monitor's thread
    /// policy chose them for this run (its threads against its CPUs);
    /// [`SPIN_ROUNDS_UNSET`]: the guest decides.
    pub spin_rounds: u32,
    pub reserved_end: u32,
    /// The host's wall-clock time (nanoseconds since the Unix epoch) when the monitor
    /// read `tsc_at_start`: the real-time clock is this plus the TSC's advance.
    pub wall_clock_ns: u64,
}

/// [`BootInfo::spin_rounds`] when the monitor leaves the choice to the guest.
pub const SPIN_ROUNDS_UNSET: u32 = u32::MAX;

impl BootInfo {
    /// A block with the magic and version set and everything else zero.
    pub const fn empty() -> Self {
        BootInfo {
            magic: BOOT_MAGIC,
            version: BOOT_VERSION,
            flags: 0,
            compartment_id: 0,
            compartment_count: 0,
            compartment_name: [0; NAME_LEN],
            mem_size: 0,
            image_end: 0,
            heap_start: 0,
            heap_size: 0,
            stack_top: 0,
            stack_size: 0,
            shared_base: 0,
            shared_size: 0,
            tsc_khz: 0,
            tsc_at_start: 0,
            argc: 0,
            component_count: 0,
            args_addr: 0,
            args_len: 0,
            placement: [0; MAX_COMPONENTS],
            device_count: 0,
            host_cpus: 0,
            devices: [DeviceInfo {
                kind: 0,
                reserved: 0,
                mmio_base: 0,
                mmio_size: 0,
            }; MAX_DEVICES],
            spin_rounds: SPIN_ROUNDS_UNSET,
            reserved_end: 0,
            wall_clock_ns: 0,
        }
    }

    /// The devices this compartment owns.
    pub fn devices(&self) -> &[DeviceInfo] {
        let n = (self.device_count as usize).min(MAX_DEVICES);
        &self.devices[..n]
    }

    /// The compartment name as text (up to the first NUL).
    pub fn name(&self) -> &str {
        let end = self
            .compartment_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.compartment_name[..end]).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(core::mem::size_of::<DeviceInfo>(), 24);
        assert_eq!(core::mem::size_of::<BootInfo>(), 176 + 8 + 4 * 24 + 8 + 8);
        assert_eq!(core::mem::offset_of!(BootInfo, wall_clock_ns), 288);
        assert_eq!(core::mem::align_of::<BootInfo>(), 8);
    }

    #[test]
    fn max_compartments_is_rpc_shms() {
        assert_eq!(MAX_COMPARTMENTS, rpc_shm::MAX_COMPARTMENTS);
    }

    #[test]
    fn name_stops_at_nul() {
        let mut b = BootInfo::empty();
        b.compartment_name[..3].copy_from_slice(b"net");
        assert_eq!(b.name(), "net");
    }
}
