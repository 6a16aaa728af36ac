//! Devices the monitor attaches to compartments (docs/devices.md).
//!
//! Built here:
//! - [`virtio::mmio::MmioTransport`]: the virtio-mmio version 2 register file, generic
//!   over a device model ([`virtio::VirtioDevice`]); it negotiates features, runs the
//!   status state machine and validates the queues before the device starts.
//! - [`virtio::queue`]: queue processing shared by all devices (chains in, used ring
//!   out, poll-then-sleep notification policy; see there for why).
//! - [`event_loop`]: a device thread running an `event-manager` loop over each queue's
//!   kick EventFd and a stop EventFd.
//! - [`block`]: virtio-blk over a host file, with request parsing in
//!   [`block::request`].
//! - [`net`]: virtio-net over a tap (the contract with the guest driver is in its
//!   docs), on the same transport and event loop with its own queue worker.
//! - [`report`]: one-line reports of driver bugs, rate-limited against a driver that
//!   breaks its device in a loop.
//! - [`virtio::Interrupt`]: the optional EventFd a device writes when the driver asked
//!   to hear of used buffers (the monitor passes the owner's doorbell).
//!
//! # How the monitor uses it
//!
//! 1. `let blk = block::Block::open(path, readonly)?` (errors name the path; a
//!    [`block::DiskError::Open`] is exit 66, a bad size exit 64), or
//!    `net::Net::new(net::Tap::open(name)?, mac)` ([`net::TapError`] says whether the
//!    tap is missing, busy or forbidden).
//! 2. `let mut dev = MmioTransport::new(blk, mem)?`. `mem` is a `GuestMemoryMmap`
//!    holding **only** memory the guest may have the device read and write: the
//!    owning compartment's data window and the read-write shared parts it may use for
//!    buffers, never its page tables or the monitor's area. Every ring, descriptor and
//!    buffer address is checked against it, so a hostile driver cannot reach anything
//!    else through the device.
//! 3. For each queue `i` in `0..dev.num_queues()`, register `dev.queue_event(i)` as a
//!    KVM ioeventfd at `window_base + QUEUE_NOTIFY_OFFSET`, length 4, datamatch `i`;
//!    `dev.set_interrupt(doorbell)` with a clone of the owner's doorbell EventFd.
//! 4. Map nothing at the window (`MMIO_WINDOW_SIZE` bytes): the owner's MMIO exits in it
//!    go to `dev.read(offset, data)` / `dev.write(offset, data)`, offsets relative to
//!    the window. Accesses from any other compartment are isolation violations and
//!    never reach the transport.
//! 5. When the driver sets DRIVER_OK the device starts its own thread; writing 0 to the
//!    status register (or dropping the transport) stops and joins it.
//!
//! The crate knows nothing about compartments: the monitor decides which compartment
//! owns a device and where its MMIO window is (at `flexos_abi::MMIO_BASE` and up).

pub mod affinity;
pub mod block;
pub mod event_loop;
pub mod net;
pub mod report;
pub mod runner;
#[cfg(test)]
mod testing;
pub mod virtio;
