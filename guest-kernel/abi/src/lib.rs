//! The contract between `flexos-vmm` and the guest library OS.
//!
//! Everything both sides must agree on lives here and nowhere else: the guest-physical
//! memory map, the boot-info block the monitor writes before the first instruction, the
//! hypercall ports and their argument blocks, and the exception frame the ring-0
//! trampolines hand to the monitor. The crate is `no_std`, has no dependencies, and is
//! compiled into both the VMM (host workspace) and the guest kernel (guest workspace).
//!
//! All structures are `#[repr(C)]` with explicit padding so their layout is identical on
//! both sides; sizes are pinned by tests.

#![no_std]

pub mod bench;
pub mod boot;
pub mod components;
pub mod hypercall;
pub mod layout;
pub mod virtio_mmio;

pub use boot::*;
pub use components::*;
pub use hypercall::*;
pub use layout::*;
