//! Devices in MMIO windows (docs/devices.md), the monitor's side:
//!
//! - [`args`]: the command line's device options, parsed;
//! - [`plan`]: the run's devices as one list, each opened and given its owner and
//!   window (a device's window index is its place in the list);
//! - [`bus`]: the windows as the vCPU loop sees them: which compartment owns which
//!   window, what memory its device may touch, and where an owner's MMIO exit goes.

pub mod args;
pub mod bus;
pub mod plan;

pub use args::{parse_disk_arg, parse_net_arg, DiskArg, NetArg, DEFAULT_MAC};
pub use bus::{device_memory, lock, DeviceHandle, MmioBus, MmioDevice, Window};
pub use plan::{owner_of, Model, PlannedDevice};
