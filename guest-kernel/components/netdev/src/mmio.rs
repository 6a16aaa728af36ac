//! The virtio-mmio (version 2) register window: offsets, status bits, feature bits,
//! and volatile 32-bit access. Every access exits to the monitor (~26 us), except
//! QueueNotify, which it binds to an ioeventfd (~3 us): only set-up and kicks touch it.

use core::ptr::NonNull;

pub const MAGIC: usize = 0x000;
pub const VERSION: usize = 0x004;
pub const DEVICE_ID: usize = 0x008;
pub const DEVICE_FEATURES: usize = 0x010;
pub const DEVICE_FEATURES_SEL: usize = 0x014;
pub const DRIVER_FEATURES: usize = 0x020;
pub const DRIVER_FEATURES_SEL: usize = 0x024;
pub const QUEUE_SEL: usize = 0x030;
pub const QUEUE_NUM_MAX: usize = 0x034;
pub const QUEUE_NUM: usize = 0x038;
pub const QUEUE_READY: usize = 0x044;
pub const QUEUE_NOTIFY: usize = 0x050;
pub const STATUS: usize = 0x070;
pub const QUEUE_DESC_LOW: usize = 0x080;
pub const QUEUE_DESC_HIGH: usize = 0x084;
pub const QUEUE_DRIVER_LOW: usize = 0x090;
pub const QUEUE_DRIVER_HIGH: usize = 0x094;
pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
pub const CONFIG: usize = 0x100;

pub const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"

pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 64;
pub const STATUS_FAILED: u32 = 128;

pub const F_GUEST_CSUM: u64 = 1 << 1;
pub const F_MAC: u64 = 1 << 5;
pub const F_GUEST_TSO4: u64 = 1 << 7;
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

/// The register window of one device.
pub struct Regs {
    base: NonNull<u8>,
}

impl Regs {
    /// # Safety
    ///
    /// `base` must be the device's virtio-mmio window, at least 0x200 bytes, mapped for
    /// the life of the value and accessed by nothing else.
    pub unsafe fn new(base: NonNull<u8>) -> Regs {
        Regs { base }
    }

    pub fn read(&self, offset: usize) -> u32 {
        // SAFETY: `offset` is one of the register offsets above, inside the window
        // (`new`'s contract), 4-byte aligned.
        unsafe { self.base.as_ptr().add(offset).cast::<u32>().read_volatile() }
    }

    pub fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value)
        }
    }

    /// Byte `i` of the device-specific configuration (8-bit fields such as the MAC
    /// are read with 8-bit accesses, as the spec asks).
    pub fn config_u8(&self, i: usize) -> u8 {
        // SAFETY: the configuration space follows the registers inside the window.
        unsafe { self.base.as_ptr().add(CONFIG + i).read_volatile() }
    }

    /// Writes a 64-bit guest-physical address into a LOW/HIGH register pair.
    pub fn write_addr(&self, low: usize, high: usize, addr: u64) {
        self.write(low, addr as u32);
        self.write(high, (addr >> 32) as u32);
    }
}
