//! Guest-physical memory map. Guest virtual addresses are identity-mapped, so every
//! address here is both the guest-physical and the guest-virtual address.

/// Page 0 is never mapped so that null dereferences fault.
pub const NULL_GUARD_END: u64 = 0x1000;
/// Start of the monitor's area: GDT, TSS, IDT, trampolines, IST stacks, page tables.
/// Supervisor-only, except the boot-info window below.
pub const VMM_AREA_START: u64 = 0x1000;
/// Boot info and guest arguments: the only user-visible (read-only) part of the VMM area.
pub const BOOT_INFO_ADDR: u64 = 0xF_0000;
/// Size of the boot-info window (boot info block followed by the argument strings).
pub const BOOT_INFO_SIZE: u64 = 0x1_0000;
/// End of the monitor's area; the image is linked here.
pub const VMM_AREA_END: u64 = 0x10_0000;
/// Where images are linked (1 MiB).
pub const IMAGE_BASE: u64 = VMM_AREA_END;
/// Compartment k's heap and stacks live in its data window at
/// `DATA_WINDOW_BASE + k * stride`: every compartment loads the same image at the same
/// address, but their dynamic data lie at distinct guest-physical addresses, so a
/// pointer leaked from one compartment is an isolation violation in another, not a
/// silent read of its own memory. The image must end below this address.
pub const DATA_WINDOW_BASE: u64 = 0x1000_0000;
/// Base of the virtio-mmio windows of the devices a compartment owns.
pub const MMIO_BASE: u64 = 0xD000_0000;
/// Every compartment's data window must end below the MMIO windows.
pub const PRIVATE_MEM_LIMIT: u64 = MMIO_BASE;
/// The shared region: same guest-physical (and virtual) address in every compartment,
/// which maps only its parts of it (header and state pages read-only except its own,
/// the channels of the pairs it belongs to read/write, nothing of other pairs).
pub const SHARED_BASE: u64 = 0x1_0000_0000;
/// Largest shared region the page tables cover.
pub const SHARED_MAX: u64 = 1 << 30;

/// Page size used for permissions and guards.
pub const PAGE_SIZE: u64 = 0x1000;
/// Large page size used for bulk mappings.
pub const LARGE_PAGE_SIZE: u64 = 0x20_0000;

/// Size of the main stack the monitor places at the top of the data window.
pub const MAIN_STACK_SIZE: u64 = 1 << 20;
/// Unmapped guard below every stack.
pub const STACK_GUARD_SIZE: u64 = PAGE_SIZE;

/// Smallest private memory that holds the VMM area, a small image, heap and stack.
pub const MIN_PRIVATE_MEM: u64 = 8 << 20;
