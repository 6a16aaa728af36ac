//! The virtio-mmio (version 2) register file as the guest's drivers and the monitor's
//! transport both see it (virtio 1.2, section 4.2.2): register offsets in a device's
//! window, the values a driver checks, the status bits and the generic feature bits.
//! The monitor's transport checks every value against `virtio-bindings` (the spec's
//! own header) at compile time, so neither side can drift from the spec or the other.

/// Register offsets in a device's window. Registers are 32 bits wide and answer only
/// aligned 4-byte accesses; configuration space (from [`reg::CONFIG`]) any width.
pub mod reg {
    pub const MAGIC_VALUE: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
    pub const VENDOR_ID: usize = 0x00c;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM_MAX: usize = 0x034;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    /// A 4-byte write of the queue index kicks it. The monitor binds it to an
    /// ioeventfd per queue, so a kick never exits to the monitor.
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_STATUS: usize = 0x060;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    pub const CONFIG_GENERATION: usize = 0x0fc;
    /// Device-specific configuration space starts here.
    pub const CONFIG: usize = 0x100;
}

/// What MagicValue reads: "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;
/// What Version reads: the modern layout.
pub const VERSION: u32 = 2;
/// What VendorID reads: "FXOS" in little-endian ASCII.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"FXOS");

/// Status register bits.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 0x40;
pub const STATUS_FAILED: u32 = 0x80;

/// Generic feature bits (as masks of the 64-bit feature word) every device here
/// offers; device-specific bits live with the device and its driver.
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

/// Size of one device's window (device `i` of a run is at `MMIO_BASE + i * WINDOW`).
pub const WINDOW_SIZE: u64 = 0x1000;

const _: () = assert!((reg::CONFIG as u64) < WINDOW_SIZE);
