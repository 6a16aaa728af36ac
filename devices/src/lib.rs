//! Devices the monitor attaches to compartments (DESIGN section 7).
//!
//! A virtio-mmio (version 2) transport, virtio-blk with a file backend and virtio-net
//! with a tap backend, driven through `virtio-queue` and `vm-memory`, with
//! notifications on ioeventfd and an `event-manager` loop. The crate knows nothing
//! about compartments: the monitor decides which compartment owns a device and maps
//! its MMIO window there (at `flexos_abi::MMIO_BASE` and up).
//!
//! Every descriptor chain a guest hands over is untrusted: bad addresses, lengths,
//! loops or directions are rejected without touching memory outside the owner.
//!
//! Status: the foundation issue only reserves the crate and the MMIO window; the
//! virtio-net and virtio-blk issues fill it.
