//! virtio-net's feature bits; the register window itself is the kernel's
//! [`flexos_kernel::virtio_mmio`], shared with every driver.

pub use flexos_kernel::virtio_mmio::*;

pub const F_GUEST_CSUM: u64 = 1 << 1;
pub const F_MAC: u64 = 1 << 5;
pub const F_GUEST_TSO4: u64 = 1 << 7;
