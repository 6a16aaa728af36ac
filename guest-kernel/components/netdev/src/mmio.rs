//! virtio-net's feature bits; the register window, the handshake and the queues are
//! the guest's virtio core ([`flexos_virtio`]), shared with every driver.

pub use flexos_virtio::mmio::*;

pub const F_CSUM: u64 = 1 << 0;
pub const F_GUEST_CSUM: u64 = 1 << 1;
pub const F_MAC: u64 = 1 << 5;
pub const F_GUEST_TSO4: u64 = 1 << 7;
pub const F_HOST_TSO4: u64 = 1 << 11;
