//! The virtio layer every device shares: the MMIO transport ([`mmio`]), queue processing
//! ([`queue`]) and the narrow [`VirtioDevice`] trait a device model implements.
//!
//! A device model (virtio-blk, virtio-net) only answers descriptor chains and
//! describes itself; register decoding, feature negotiation, the status state machine and
//! queue validation live in the transport, and the poll/sleep policy in [`queue`].

pub mod interrupt;
pub mod mmio;
pub mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use self::interrupt::Interrupt;

/// Guest memory as the devices see it. It must hold only memory the guest may have a
/// device read and write (see the crate docs): a descriptor outside it is refused.
pub type GuestMemory = GuestMemoryMmap<()>;

/// What a device gets when the driver sets DRIVER_OK.
#[derive(Debug)]
pub struct Activation {
    /// The memory every descriptor, ring and buffer must lie in.
    pub mem: GuestMemory,
    /// The queues, validated against `mem`, in queue-index order.
    pub queues: Vec<Queue>,
    /// One kick EventFd per queue (clones of the transport's, see
    /// [`mmio::MmioTransport::queue_event`]).
    pub kicks: Vec<EventFd>,
    /// Features the driver accepted (a subset of [`VirtioDevice::features`]).
    pub acked_features: u64,
    /// Raised by the device when the guest broke the protocol.
    pub needs_reset: NeedsReset,
    /// How the device tells the guest about new used buffers (see [`Interrupt`]); a
    /// device that leaves the guest to poll its used rings may ignore it.
    pub interrupt: Interrupt,
}

/// A device model behind a virtio transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (`virtio_ids::VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// Feature bits the device offers.
    fn features(&self) -> u64;
    /// Maximum size of each queue; the slice length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads device config space at `offset`; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes device config space; read-only fields ignore the write.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device on validated queues.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// A QueueNotify write that reached the transport (no ioeventfd registered).
    fn queue_notify(&mut self, queue: u16);
    /// Stops the device and drops its queues; it may be activated again afterwards.
    fn reset(&mut self);
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("device expects {expected} queues, driver set up {got}")]
    QueueCount { expected: usize, got: usize },
    #[error("cannot start the device thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the device's backend refused its settings: {0}")]
    Backend(#[source] std::io::Error),
}

/// The DEVICE_NEEDS_RESET flag, shared between the transport and the thread that runs
/// the queues: the device raises it when the guest breaks the protocol in a way no
/// status byte can report, and the transport shows it in the status register.
#[derive(Clone, Debug, Default)]
pub struct NeedsReset(Arc<AtomicBool>);

impl NeedsReset {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Set when the device is being stopped (the run ends, or the guest resets it): work in
/// progress gives up at its next check, so a stop never waits for the queue. Shared by
/// the device thread's loop and the model answering chains; the model checks it between
/// bounded pieces of work (see `block::request::CHUNK`).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
