//! The virtio-mmio (version 2) register window every guest driver talks to: register
//! offsets, status bits, and bounds-checked volatile access. Each access exits to the
//! monitor (~26 us here) except QueueNotify, which the monitor binds to an ioeventfd
//! (~3 us): drivers touch the window only to set a device up, to kick it when it asked
//! for a kick, and to read the status after a long wait.

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
/// Device-specific configuration space.
pub const CONFIG: usize = 0x100;

/// What MagicValue reads: "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;

pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 0x40;
pub const STATUS_FAILED: u32 = 0x80;

/// Feature bits every device here offers (device-specific bits live with the driver).
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

/// One device's register window.
pub struct Regs {
    base: NonNull<u8>,
    size: usize,
}

impl Regs {
    /// # Safety
    ///
    /// `base .. base + size` is this compartment's virtio-mmio window of one device,
    /// mapped (as MMIO that exits) for the value's life and touched by nothing else.
    pub unsafe fn new(base: NonNull<u8>, size: usize) -> Regs {
        Regs { base, size }
    }

    /// The address of the `len`-byte register at `offset`; panics outside the window
    /// or misaligned (a driver bug, never guest input).
    fn at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset + len <= self.size && offset.is_multiple_of(len),
            "virtio-mmio register {offset:#x} ({len} bytes) outside a {:#x}-byte window",
            self.size
        );
        // SAFETY: in bounds of the window (asserted above).
        unsafe { self.base.as_ptr().add(offset) }
    }
}

impl Transport for Regs {
    #[inline]
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: an aligned register inside the window (see `new`); MMIO needs a
        // volatile access of exactly 4 bytes.
        unsafe { self.at(offset, 4).cast::<u32>().read_volatile() }
    }

    #[inline]
    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.at(offset, 4).cast::<u32>().write_volatile(value) }
    }

    /// 8-bit fields such as a MAC are read with 8-bit accesses, as the spec asks.
    fn config_u8(&self, i: usize) -> u8 {
        // SAFETY: a byte inside the window (checked by `at`).
        unsafe { self.at(CONFIG + i, 1).read_volatile() }
    }
}

/// 32-bit (and, for byte-wide configuration fields, 8-bit) register access: [`Regs`]
/// for a device's window (its volatile accesses), or a model of a device in host
/// tests.
pub trait Transport {
    /// The 32-bit register at `offset`.
    fn read(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write(&self, offset: usize, value: u32);
    /// Byte `i` of the device-specific configuration.
    fn config_u8(&self, i: usize) -> u8;
}
