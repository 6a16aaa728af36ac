//! The driver state and the `blk` server.

use alloc::boxed::Box;
use alloc::vec::Vec;

use flexos_kernel::abi::DEVICE_BLOCK;
use flexos_kernel::rpc::SharedBuf;
use flexos_kernel::sync::SpinLock;
use flexos_kernel::{boot_info, gate, println};

use crate::blk;
use crate::extents::{EXTENT_BYTES, Extent};
use crate::request::{
    E_BAD_BUFFER, E_BUSY, E_IO, E_LENGTH, E_NO_DEVICE, E_NO_MEMORY, E_READ_ONLY, check_transfer,
};
use crate::virtq::{MAX_BATCH, QUEUE_SIZE, Request, Segment, Virtq};
use flexos_virtio::Device;
use flexos_virtio::mmio::F_RING_EVENT_IDX;

const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// What we can use beside VERSION_1 (which the virtio core always requires).
const OPTIONAL: u64 = F_RING_EVENT_IDX | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO;

const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_S_OK: u8 = 0;

/// Spins on the used ring between two looks at the device status (an exit each).
const SPINS_PER_STATUS_CHECK: u32 = 1 << 22;

/// A started device.
struct Running {
    device: Device,
    queue: Virtq,
    capacity: u64,
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
    // SAFETY: the monitor maps the device's virtio-mmio window identity-mapped at
    // mmio_base, mmio_size bytes long, for this compartment's whole life, and only this
    // driver touches it (the state is created once, under the lock).
    let device = match unsafe { Device::open(dev, DEVICE_BLOCK) } {
        Ok(device) => device,
        Err(why) => {
            println!("blkdev: no block device at {:#x}: {why}", dev.mmio_base);
            return State::Absent;
        }
    };
    match Running::start(device) {
        Ok(running) => State::Running(Box::new(running)),
        Err(why) => {
            println!("blkdev: the block device did not start: {why}");
            State::Absent
        }
    }
}

impl Running {
    /// The initialisation sequence (the virtio core's), with one queue of
    /// [`QUEUE_SIZE`] entries, then the capacity.
    fn start(mut device: Device) -> Result<Running, flexos_virtio::StartError> {
        device.negotiate(0, OPTIONAL)?;
        let queue = Virtq::new(device.queue(0, QUEUE_SIZE, QUEUE_SIZE)?);
        device.driver_ok()?;
        // capacity: le64 at config offset 0.
        let capacity = device.config_u64(0);
        Ok(Running {
            device,
            queue,
            capacity,
        })
    }

    fn readonly(&self) -> bool {
        self.device.has(VIRTIO_BLK_F_RO)
    }

    /// Posts `requests` as one batch and waits for all of them: `Ok` if every status is
    /// OK. A device that shows NEEDS_RESET or FAILED while we wait is an I/O error (the
    /// queue then stays busy: every later call fails too).
    fn run(&mut self, requests: &[Request<'_>]) -> Result<(), i64> {
        if self.queue.post(requests).map_err(|_| E_IO)? {
            self.device.notify(0);
        }
        let mut spins = 0u32;
        while !self.queue.done() {
            core::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPINS_PER_STATUS_CHECK) && self.device.broken() {
                return Err(E_IO);
            }
        }
        let mut statuses = [0u8; MAX_BATCH];
        let statuses = &mut statuses[..requests.len()];
        self.queue.finish(statuses);
        if statuses.iter().all(|&s| s == VIRTIO_BLK_S_OK) {
            Ok(())
        } else {
            Err(E_IO)
        }
    }

    /// One request moving `buf` straight between the disk and the shared buffer: the
    /// device reads or fills the caller's memory, nothing is copied here.
    fn transfer(&mut self, sector: u64, buf: SharedBuf, write: bool) -> i64 {
        let Ok(bytes) = gate::bytes(buf) else {
            return E_BAD_BUFFER;
        };
        if let Err(code) = check_transfer(self.capacity, sector, bytes.len()) {
            return code;
        }
        if write && self.readonly() {
            return E_READ_ONLY;
        }
        let data = [Segment {
            addr: bytes.as_ptr() as u64,
            len: bytes.len() as u32,
            device_writes: !write,
        }];
        let kind = if write {
            VIRTIO_BLK_T_OUT
        } else {
            VIRTIO_BLK_T_IN
        };
        match self.run(&[Request {
            kind,
            sector,
            data: &data,
        }]) {
            Ok(()) => bytes.len() as i64,
            Err(code) => code,
        }
    }

    fn flush(&mut self) -> i64 {
        // Without FLUSH the device promises nothing more to wait for (virtio 1.2,
        // 5.2.6.2: the driver must not send it).
        if !self.device.has(VIRTIO_BLK_F_FLUSH) {
            return 0;
        }
        match self.run(&[Request {
            kind: VIRTIO_BLK_T_FLUSH,
            sector: 0,
            data: &[],
        }]) {
            Ok(()) => 0,
            Err(code) => code,
        }
    }

    /// The extents in `list` from `data`, posted in batches of up to [`MAX_BATCH`]
    /// requests, then a flush if `flush`; returns the bytes written.
    fn write_extents(&mut self, list: SharedBuf, data: SharedBuf, flush: bool) -> i64 {
        let (Ok(list), Ok(data)) = (gate::bytes(list), gate::bytes(data)) else {
            return E_BAD_BUFFER;
        };
        if list.is_empty() || list.len() % EXTENT_BYTES != 0 {
            return E_LENGTH;
        }
        if self.readonly() {
            return E_READ_ONLY;
        }
        // Copied out once, then checked: the caller may change the shared list.
        let mut raw = Vec::new();
        if raw.try_reserve_exact(list.len()).is_err() {
            return E_NO_MEMORY;
        }
        raw.resize(list.len(), 0);
        if list.read(0, &mut raw).is_err() {
            return E_BAD_BUFFER;
        }
        let mut extents = Vec::with_capacity(raw.len() / EXTENT_BYTES);
        for chunk in raw.chunks_exact(EXTENT_BYTES) {
            let extent = Extent::decode(chunk.try_into().expect("EXTENT_BYTES"));
            if let Err(code) = extent.check(self.capacity, data.len()) {
                return code;
            }
            extents.push(extent);
        }
        let base = data.as_ptr() as u64;
        let mut written = 0i64;
        for batch in extents.chunks(MAX_BATCH) {
            let mut segments = [Segment {
                addr: 0,
                len: 0,
                device_writes: false,
            }; MAX_BATCH];
            for (seg, e) in segments.iter_mut().zip(batch) {
                seg.addr = base + u64::from(e.offset);
                seg.len = e.len;
            }
            let mut requests = Vec::with_capacity(batch.len());
            for (i, e) in batch.iter().enumerate() {
                requests.push(Request {
                    kind: VIRTIO_BLK_T_OUT,
                    sector: e.sector,
                    data: core::slice::from_ref(&segments[i]),
                });
            }
            if let Err(code) = self.run(&requests) {
                return code;
            }
            written += batch.iter().map(|e| i64::from(e.len)).sum::<i64>();
        }
        if flush {
            let code = self.flush();
            if code < 0 {
                return code;
            }
        }
        written
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

impl blk::Api for Driver {
    fn capacity(&self) -> u64 {
        let mut sectors = 0;
        self.with(|r| {
            sectors = r.capacity;
            0
        });
        sectors
    }

    fn read(&self, sector: u64, buf: SharedBuf) -> i64 {
        self.with(|r| r.transfer(sector, buf, false))
    }

    fn write(&self, sector: u64, buf: SharedBuf) -> i64 {
        self.with(|r| r.transfer(sector, buf, true))
    }

    fn flush(&self) -> i64 {
        self.with(Running::flush)
    }

    fn readonly(&self) -> i64 {
        self.with(|r| i64::from(r.readonly()))
    }

    fn write_extents(&self, list: SharedBuf, data: SharedBuf, flush: bool) -> i64 {
        self.with(|r| r.write_extents(list, data, flush))
    }
}
