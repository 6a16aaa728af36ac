//! The virtio-mmio (version 2) registers of the device window. Every access is a VM
//! exit (~26 us here), so the driver touches them only to set the device up, to kick
//! (when the device asked for it) and to look at the status after a long wait.

use core::ptr::NonNull;

pub const MAGIC_VALUE: usize = 0x000;
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
pub const CONFIG_GENERATION: usize = 0x0fc;
pub const CONFIG: usize = 0x100;

/// "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;

pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 0x40;
pub const STATUS_FAILED: u32 = 0x80;

/// The register window.
pub struct Regs {
    base: NonNull<u32>,
    size: usize,
}

impl Regs {
    /// # Safety
    ///
    /// `base .. base + size` is this compartment's virtio-mmio window, mapped (as MMIO
    /// that exits) for the compartment's life and touched by nothing else.
    pub unsafe fn new(base: NonNull<u32>, size: usize) -> Regs {
        Regs { base, size }
    }

    fn at(&self, offset: usize) -> *mut u32 {
        assert!(
            offset + 4 <= self.size && offset.is_multiple_of(4),
            "register {offset:#x}"
        );
        // SAFETY: in bounds of the window (asserted above).
        unsafe { self.base.as_ptr().byte_add(offset) }
    }

    pub fn read(&self, offset: usize) -> u32 {
        // SAFETY: an aligned register inside the window (see `new`); MMIO needs a
        // volatile access of exactly 4 bytes.
        unsafe { self.at(offset).read_volatile() }
    }

    pub fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.at(offset).write_volatile(value) }
    }

    /// Writes a 64-bit address into a LOW/HIGH register pair.
    pub fn write64(&self, low: usize, high: usize, value: u64) {
        self.write(low, value as u32);
        self.write(high, (value >> 32) as u32);
    }
}
