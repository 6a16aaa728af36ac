//! The FlexOS library OS runtime, linked into every image.
//!
//! An image runs in ring 3 of each compartment VM (the monitor's TSS I/O bitmap opens
//! the hypercall ports to it). The monitor has already
//! built everything privileged (page tables, GDT/TSS/IDT, exception trampolines), so this
//! crate never executes a privileged instruction: it talks to the monitor only through
//! the hypercalls of [`flexos_abi`] (`out dx, eax`). Memory is identity-mapped.
//!
//! What lives here:
//! - `start`: the entry point `_start` (the order of boot) and the [`main!`] macro
//!   through which an app declares its `main`;
//! - [`rt`]: the boot-info checks, [`boot_info`] and [`exit`];
//! - [`hypercall`]: safe wrappers around the hypercall ports;
//! - [`console`]: the line-buffered console behind [`print!`] and [`println!`];
//! - [`time`]: TSC-based time since boot;
//! - [`heap`]: the global allocator over the private heap;
//! - [`args`]: the guest arguments passed on the monitor's command line;
//! - [`components`]: the component table an image exports, and placement queries;
//! - [`gate`]: the gate layer: this compartment's rpc-shm endpoint, the router generated
//!   clients use, server registration ([`servers!`]) and shared-heap buffers;
//! - [`sync`]: the spin lock and boot-time cell the runtime uses instead of `static mut`;
//! - `panic`: the panic handler, which reports to the monitor without allocating.

#![no_std]

extern crate alloc;

pub mod args;
pub mod components;
pub mod console;
pub mod gate;
pub mod heap;
pub mod hypercall;
mod panic;
pub mod rt;
mod start;
pub mod sync;
pub mod time;

pub use args::Args;
pub use flexos_abi as abi;
/// rpc-shm, for `rpc::interface!`, `rpc::gate_enum!`, `SharedBuf`, `GateError`, ...
pub use rpc_shm as rpc;
pub use rt::{boot_info, compartment_id, exit};
