//! Bringing a virtio-mmio device up: the initialisation sequence of virtio 1.2, 3.1.1
//! (reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK, queue setup,
//! DRIVER_OK), over any [`Transport`], so the sequence is tested on the host against
//! a model of a device.
//!
//! ```ignore
//! let mut dev = unsafe { Device::open(info, DEVICE_BLOCK) }?;   // magic, version, id
//! let features = dev.negotiate(REQUIRED, OPTIONAL)?;            // VERSION_1 implied
//! let queue = dev.queue(0, 64, 64)?;                            // a SplitQueue
//! dev.driver_ok()?;
//! ```
//!
//! Any step that fails sets FAILED in the status register (the spec's "the driver
//! gives up") and returns a [`StartError`] that says what the device lacked.

use core::fmt;
use core::ptr::NonNull;

use flexos_abi::DeviceInfo;

use crate::mmio::*;
use crate::queue::SplitQueue;

/// Why a device could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The window holds no virtio-mmio version 2 device (or is too small for one).
    NotVirtio,
    /// The device is another kind (virtio device id).
    WrongDevice(u32),
    /// Features the driver requires are not offered.
    MissingFeatures { offered: u64, missing: u64 },
    /// The device did not accept the negotiated features (FEATURES_OK did not stick).
    FeaturesRefused,
    /// The queue is already set up (QueueReady is not 0).
    QueueInUse(u32),
    /// The device has no such queue (QueueNumMax is 0).
    NoQueue(u32),
    /// The queue's maximum size is below what the driver needs.
    QueueTooSmall { queue: u32, max: u32, need: u16 },
    /// No memory for the queue.
    NoMemory,
    /// The device set NEEDS_RESET or FAILED when the driver was ready.
    DeviceFailed,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StartError::NotVirtio => {
                f.write_str("the window holds no virtio-mmio version 2 device")
            }
            StartError::WrongDevice(id) => write!(f, "the device is virtio id {id}"),
            StartError::MissingFeatures { offered, missing } => write!(
                f,
                "the device lacks features {missing:#x} (offers {offered:#x})"
            ),
            StartError::FeaturesRefused => {
                f.write_str("the device refused the negotiated features")
            }
            StartError::QueueInUse(q) => write!(f, "its queue {q} is already in use"),
            StartError::NoQueue(q) => write!(f, "the device has no queue {q}"),
            StartError::QueueTooSmall { queue, max, need } => {
                write!(
                    f,
                    "its queue {queue} holds {max} entries; {need} are needed"
                )
            }
            StartError::NoMemory => f.write_str("no memory for the queue"),
            StartError::DeviceFailed => f.write_str("it failed when the driver was ready"),
        }
    }
}

/// A virtio-mmio device being started or running: its registers and the features
/// negotiated.
pub struct Device<T: Transport = Regs> {
    regs: T,
    features: u64,
    status: u32,
}

impl Device<Regs> {
    /// The device in the window `info` describes, checked to be a virtio-mmio version 2
    /// device of id `id` (not reset yet: [`Device::negotiate`] does that).
    ///
    /// # Safety
    ///
    /// `info` is this compartment's own device from its boot info: the monitor maps the
    /// window there for the compartment's whole life, and nothing else touches it
    /// while the returned value exists.
    pub unsafe fn open(info: &DeviceInfo, id: u32) -> Result<Self, StartError> {
        if info.mmio_size < CONFIG as u64 {
            return Err(StartError::NotVirtio);
        }
        let base = NonNull::new(info.mmio_base as usize as *mut u8).ok_or(StartError::NotVirtio)?;
        // SAFETY: the caller's contract: the window is mapped for the compartment's
        // life and is this device's alone.
        let regs = unsafe { Regs::new(base, info.mmio_size as usize) };
        Device::probe(regs, id)
    }
}

impl<T: Transport> Device<T> {
    /// Checks that `regs` is a virtio-mmio version 2 device of id `id`.
    pub fn probe(regs: T, id: u32) -> Result<Self, StartError> {
        if regs.read(MAGIC_VALUE) != MAGIC || regs.read(VERSION) != MODERN_VERSION {
            return Err(StartError::NotVirtio);
        }
        match regs.read(DEVICE_ID) {
            found if found == id => Ok(Device {
                regs,
                features: 0,
                status: 0,
            }),
            other => Err(StartError::WrongDevice(other)),
        }
    }

    fn set_status(&mut self, bits: u32) {
        self.status |= bits;
        self.regs.write(STATUS, self.status);
    }

    /// Gives up on the device: FAILED in the status register; returns `why`.
    fn fail(&mut self, why: StartError) -> StartError {
        self.set_status(STATUS_FAILED);
        why
    }

    /// Resets the device, acknowledges it, and negotiates features: every bit of
    /// `required` (and [`F_VERSION_1`], always) must be offered; the offered bits of
    /// `optional` are taken too. Returns the features in use (also
    /// [`Device::features`]) once the device accepted them.
    pub fn negotiate(&mut self, required: u64, optional: u64) -> Result<u64, StartError> {
        self.status = 0;
        self.regs.write(STATUS, 0);
        self.set_status(STATUS_ACKNOWLEDGE);
        self.set_status(STATUS_DRIVER);
        let mut offered = 0u64;
        for sel in 0..2u32 {
            self.regs.write(DEVICE_FEATURES_SEL, sel);
            offered |= u64::from(self.regs.read(DEVICE_FEATURES)) << (32 * sel);
        }
        let required = required | F_VERSION_1;
        let missing = required & !offered;
        if missing != 0 {
            return Err(self.fail(StartError::MissingFeatures { offered, missing }));
        }
        let features = offered & (required | optional);
        for sel in 0..2u32 {
            self.regs.write(DRIVER_FEATURES_SEL, sel);
            self.regs
                .write(DRIVER_FEATURES, (features >> (32 * sel)) as u32);
        }
        self.set_status(STATUS_FEATURES_OK);
        if self.regs.read(STATUS) & STATUS_FEATURES_OK == 0 {
            return Err(self.fail(StartError::FeaturesRefused));
        }
        self.features = features;
        Ok(features)
    }

    /// The features negotiated.
    #[inline]
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Was `feature` negotiated?
    #[inline]
    pub fn has(&self, feature: u64) -> bool {
        self.features & feature == feature
    }

    /// Sets up queue `index` with the largest power of two of entries that is at most
    /// `max` (and at most [`crate::queue::MAX_SIZE`]) and that the device allows; it
    /// must be at least `min`. Uses EVENT_IDX if negotiated.
    pub fn queue(&mut self, index: u32, min: u16, max: u16) -> Result<SplitQueue, StartError> {
        self.regs.write(QUEUE_SEL, index);
        if self.regs.read(QUEUE_READY) != 0 {
            return Err(self.fail(StartError::QueueInUse(index)));
        }
        let device_max = self.regs.read(QUEUE_NUM_MAX);
        if device_max == 0 {
            return Err(self.fail(StartError::NoQueue(index)));
        }
        let limit = device_max.min(u32::from(max.min(crate::queue::MAX_SIZE)));
        let size = if limit == 0 { 0 } else { 1u16 << limit.ilog2() };
        if size == 0 || size < min {
            return Err(self.fail(StartError::QueueTooSmall {
                queue: index,
                max: device_max,
                need: min.max(1),
            }));
        }
        let Some(queue) = SplitQueue::new(size, self.has(F_RING_EVENT_IDX)) else {
            return Err(self.fail(StartError::NoMemory));
        };
        let (desc, avail, used) = queue.addresses();
        self.regs.write(QUEUE_NUM, u32::from(size));
        self.write64(QUEUE_DESC_LOW, QUEUE_DESC_HIGH, desc);
        self.write64(QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, avail);
        self.write64(QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, used);
        self.regs.write(QUEUE_READY, 1);
        Ok(queue)
    }

    /// Writes a 64-bit guest-physical address into a LOW/HIGH register pair.
    fn write64(&self, low: usize, high: usize, value: u64) {
        self.regs.write(low, value as u32);
        self.regs.write(high, (value >> 32) as u32);
    }

    /// Tells the device the driver is ready (DRIVER_OK), then checks that it did not
    /// fail.
    pub fn driver_ok(&mut self) -> Result<(), StartError> {
        self.set_status(STATUS_DRIVER_OK);
        if self.broken() {
            return Err(StartError::DeviceFailed);
        }
        Ok(())
    }

    /// Gives up on the device (FAILED), e.g. when the driver cannot set up its
    /// buffers after the handshake.
    pub fn abandon(&mut self) {
        self.set_status(STATUS_FAILED);
    }

    /// Does the device say it needs a reset or has failed? (An exit: use it after a
    /// long wait, not per request.)
    pub fn broken(&self) -> bool {
        self.regs.read(STATUS) & (STATUS_NEEDS_RESET | STATUS_FAILED) != 0
    }

    /// Notifies the device of new buffers in queue `index` (QueueNotify, the one
    /// register the monitor binds to an ioeventfd).
    #[inline]
    pub fn notify(&self, index: u32) {
        self.regs.write(QUEUE_NOTIFY, index);
    }

    /// Byte `i` of the device-specific configuration.
    pub fn config_u8(&self, i: usize) -> u8 {
        self.regs.config_u8(i)
    }

    /// The little-endian 64-bit configuration field at `offset`, read until the
    /// configuration generation is the same before and after (a torn read retried).
    pub fn config_u64(&self, offset: usize) -> u64 {
        loop {
            let generation = self.regs.read(CONFIG_GENERATION);
            let low = self.regs.read(CONFIG + offset);
            let high = self.regs.read(CONFIG + offset + 4);
            if self.regs.read(CONFIG_GENERATION) == generation {
                return u64::from(low) | u64::from(high) << 32;
            }
        }
    }

    /// The registers (for tests that inspect a model device).
    pub fn transport(&self) -> &T {
        &self.regs
    }
}
