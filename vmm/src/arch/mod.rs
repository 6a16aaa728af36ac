//! x86_64 machine state the monitor builds before a compartment's first instruction:
//! where things live in the monitor's area, page tables, descriptor tables, the ring-0
//! exception trampolines, and the initial vCPU registers.
//!
//! The guest runs in ring 3 because on kvm-pvm ring-0 code is emulated instruction by
//! instruction (docs/design.md, why the guest runs in ring 3). Ring 0 holds only the trampolines built here.

pub mod cpu;
pub mod descriptors;
pub use flexos_image::segment as image_segment;
pub mod layout;
pub mod paging;
pub mod trampolines;
