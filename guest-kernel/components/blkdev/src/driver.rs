//! The driver state and the `blk` server.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use flexos_kernel::abi::DEVICE_BLOCK;
use flexos_kernel::rpc::SharedBuf;
use flexos_kernel::sync::SpinLock;
use flexos_kernel::{boot_info, gate, println};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

use crate::blk;
use crate::hal::HeapHal;
use crate::request::{
    E_BAD_BUFFER, E_BUSY, E_IO, E_NO_DEVICE, E_READ_ONLY, SECTOR_SIZE, check_transfer,
};

/// Largest transfer handed to the device at once: the size of the bounce buffer.
const CHUNK: usize = 64 * 1024;

type Disk = VirtIOBlk<HeapHal, MmioTransport<'static>>;

struct Running {
    disk: Disk,
    /// Private DMA buffer the device reads from and writes into (heap: data window).
    bounce: Vec<u8>,
}

enum State {
    /// No call yet: the device is started on the first one.
    Unstarted,
    /// No device, or it failed to start (reported once, on the console).
    Absent,
    Running(Box<Running>),
}

/// The driver: one virtio-blk device, started on first use.
pub struct Driver {
    state: SpinLock<StateCell>,
}

/// The state, made `Send` for the lock.
struct StateCell(State);

// SAFETY: a compartment runs on one vCPU and the state is only reached under the lock;
// the raw pointers inside the driver (MMIO window, ring memory) point at memory of this
// compartment that stays mapped for its life, so moving the state between contexts of
// the same vCPU is sound.
unsafe impl Send for StateCell {}

/// The server every image with a `blkdev` component registers:
/// `servers! { BLKDEV => flexos_blkdev::blk(flexos_blkdev::SERVER) }`.
pub static SERVER: blk::Server<Driver> = blk::Server(Driver {
    state: SpinLock::new(StateCell(State::Unstarted)),
});

/// Finds this compartment's virtio-blk window and starts the device.
fn start() -> State {
    let Some(dev) = boot_info()
        .devices()
        .iter()
        .find(|d| d.kind == DEVICE_BLOCK)
    else {
        println!("blkdev: no block device attached (run with --disk PATH)");
        return State::Absent;
    };
    let Some(header) = NonNull::new(dev.mmio_base as *mut VirtIOHeader) else {
        println!("blkdev: the block device's MMIO window is at address 0");
        return State::Absent;
    };
    // SAFETY: the monitor maps the device's virtio-mmio window identity-mapped at
    // mmio_base, mmio_size bytes long, for this compartment's whole life, and only this
    // driver touches it (the state is created once, under the lock).
    let transport = match unsafe { MmioTransport::new(header, dev.mmio_size as usize) } {
        Ok(t) => t,
        Err(e) => {
            println!(
                "blkdev: no virtio-mmio block device at {:#x}: {e}",
                dev.mmio_base
            );
            return State::Absent;
        }
    };
    match Disk::new(transport) {
        Ok(disk) => State::Running(Box::new(Running {
            disk,
            bounce: vec![0; CHUNK],
        })),
        Err(e) => {
            println!("blkdev: the block device did not start: {e}");
            State::Absent
        }
    }
}

impl Driver {
    /// Runs `f` on the started device, or returns the error code.
    fn with(&self, f: impl FnOnce(&mut Running) -> i64) -> i64 {
        let Some(mut guard) = self.state.try_lock() else {
            return E_BUSY;
        };
        if let State::Unstarted = guard.0 {
            guard.0 = start();
        }
        match &mut guard.0 {
            State::Running(r) => f(r),
            _ => E_NO_DEVICE,
        }
    }
}

/// Moves `buf` to or from the disk at `sector` in chunks through the bounce buffer.
fn transfer(r: &mut Running, sector: u64, buf: SharedBuf, write: bool) -> i64 {
    let Ok(bytes) = gate::bytes(buf) else {
        return E_BAD_BUFFER;
    };
    if let Err(code) = check_transfer(r.disk.capacity(), sector, bytes.len()) {
        return code;
    }
    if write && r.disk.readonly() {
        return E_READ_ONLY;
    }
    let mut done = 0;
    while done < bytes.len() {
        let n = (bytes.len() - done).min(CHUNK);
        let chunk = &mut r.bounce[..n];
        let at = (sector + (done / SECTOR_SIZE) as u64) as usize;
        let ok = if write {
            bytes.read(done, chunk).is_ok() && r.disk.write_blocks(at, chunk).is_ok()
        } else {
            r.disk.read_blocks(at, chunk).is_ok() && bytes.write(done, chunk).is_ok()
        };
        if !ok {
            return E_IO;
        }
        done += n;
    }
    done as i64
}

impl blk::Api for Driver {
    fn capacity(&self) -> u64 {
        let mut sectors = 0;
        self.with(|r| {
            sectors = r.disk.capacity();
            0
        });
        sectors
    }

    fn read(&self, sector: u64, buf: SharedBuf) -> i64 {
        self.with(|r| transfer(r, sector, buf, false))
    }

    fn write(&self, sector: u64, buf: SharedBuf) -> i64 {
        self.with(|r| transfer(r, sector, buf, true))
    }

    fn flush(&self) -> i64 {
        self.with(|r| if r.disk.flush().is_ok() { 0 } else { E_IO })
    }

    fn readonly(&self) -> i64 {
        self.with(|r| i64::from(r.disk.readonly()))
    }
}
