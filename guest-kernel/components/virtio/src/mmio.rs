//! The virtio-mmio (version 2) register window every guest driver talks to: register
//! offsets, status bits, and bounds-checked volatile access. Each access exits to the
//! monitor (~26 us here) except QueueNotify, which the monitor binds to an ioeventfd
//! (~3 us): drivers touch the window only to set a device up, to kick it when it asked
//! for a kick, and to read the status after a long wait.

use core::ptr::NonNull;

// One table for the guest's drivers and the monitor's transport (flexos-abi), checked
// against the spec on the monitor's side.
/// What the Version register reads (the register itself is [`VERSION`]).
pub use flexos_abi::virtio_mmio::VERSION as MODERN_VERSION;
pub use flexos_abi::virtio_mmio::reg::*;
pub use flexos_abi::virtio_mmio::{
    F_RING_EVENT_IDX, F_VERSION_1, MAGIC, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};

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
