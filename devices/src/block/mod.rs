//! virtio-blk over a host file.
//!
//! Offers VERSION_1, RING_EVENT_IDX, FLUSH (fdatasync), SEG_MAX, BLK_SIZE (512) and,
//! for a read-only disk, RO. Config space: capacity in 512-byte sectors, seg_max,
//! blk_size. One request queue, whose requests are carried out one at a time in the
//! order the driver made them available.
//!
//! A stop (the run ends, a crash) or a guest reset never waits for the queue: the
//! device thread, its queue runner and the handler share one [`StopFlag`], checked
//! before each chain and between pieces of at most [`request::CHUNK`] bytes of a
//! request, so a driver that queues 256 reads of 4 GiB cannot hold the monitor's exit
//! or its own vCPU. A request cut short gets no answer; its queue goes with the device.
//!
//! A disk file on tmpfs or ramfs gets no FLUSH: there a completed write is already as
//! durable as it can be (fdatasync does nothing), so the device is write-through, as
//! virtio-blk defines a device without FLUSH, and a driver saves the flush's round
//! trip at every sync. (A FLUSH request still works and answers OK.)

pub mod disk;
pub mod request;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::DescriptorChain;
use vm_memory::Bytes;

pub use self::disk::{Disk, DiskError, SECTOR_SIZE};
use self::request::ParseError;
use crate::event_loop::QueueSubscriber;
use crate::report::Report;
pub use crate::runner::Execution;
use crate::runner::{Running, ThreadSpec};
use crate::virtio::queue::{ChainError, ChainHandler, QueueRunner, Unanswerable, DEFAULT_POLL};
use crate::virtio::{ActivateError, Activation, GuestMemory, StopFlag, VirtioDevice};

/// Size of the request queue (the driver may choose a smaller power of two).
pub const QUEUE_SIZE: u16 = 256;

/// Answers the chains of the request queue.
pub struct BlockHandler {
    disk: Arc<Disk>,
    /// Checked between bounded pieces of a request (see [`request::CHUNK`]).
    stop: StopFlag,
}

impl ChainHandler for BlockHandler {
    fn handle(
        &mut self,
        mem: &GuestMemory,
        chain: DescriptorChain<&GuestMemory>,
    ) -> Result<u32, ChainError> {
        let (status_addr, status, len) = match request::parse(chain, mem, self.disk.size()) {
            Ok(req) => {
                let (status, len) = request::execute(&req, &self.disk, mem, &self.stop)
                    .ok_or(ChainError::Stopped)?;
                (req.status, status, len)
            }
            Err(ParseError::Rejected { status, .. }) => (
                status,
                virtio_bindings::bindings::virtio_blk::VIRTIO_BLK_S_IOERR as u8,
                1,
            ),
            Err(ParseError::Unanswerable(e)) => return Err(e.into()),
        };
        mem.write_obj(status, status_addr)
            .map_err(|_| Unanswerable("status byte not writable"))?;
        Ok(len)
    }
}

/// A virtio-blk device model; put it in a [`crate::virtio::mmio::MmioTransport`].
pub struct Block {
    disk: Arc<Disk>,
    config: [u8; 24],
    features: u64,
    execution: Execution,
    poll: Duration,
    adaptive_poll: bool,
    report: Option<Report>,
    cpu: Option<usize>,
    /// Set by whoever ends the run, without the device's lock: a queue run inline
    /// holds that lock (its vCPU is in the middle of a kick) for as long as the queue
    /// takes, so only this flag can cut it short.
    ended: StopFlag,
    running: Running<QueueRunner<BlockHandler>>,
}

impl Block {
    /// Opens the disk file (`readonly`: opened read-only and RO offered). Errors:
    /// [`DiskError::Open`] (exit 66 in the monitor), [`DiskError::Size`] and
    /// [`DiskError::NotAFile`] (exit 64).
    pub fn open(path: &Path, readonly: bool) -> Result<Block, DiskError> {
        Ok(Block::new(Disk::open(path, readonly)?))
    }

    pub fn new(disk: Disk) -> Block {
        let mut features = (1u64 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE);
        if !disk.memory_only() {
            features |= 1 << VIRTIO_BLK_F_FLUSH;
        }
        if disk.readonly() {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        // struct virtio_blk_config up to blk_size: capacity, size_max (not offered),
        // seg_max, geometry (not offered), blk_size.
        let mut config = [0u8; 24];
        config[0..8].copy_from_slice(&(disk.size() / SECTOR_SIZE).to_le_bytes());
        // Header and status take one descriptor each.
        config[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        Block {
            disk: Arc::new(disk),
            config,
            features,
            execution: Execution::OwnThread,
            poll: DEFAULT_POLL,
            adaptive_poll: false,
            report: None,
            cpu: None,
            ended: StopFlag::default(),
            running: Running::Stopped,
        }
    }

    /// Chooses where the queue runs (default [`Execution::OwnThread`]).
    pub fn with_execution(mut self, execution: Execution) -> Block {
        self.execution = execution;
        self
    }

    /// How long the device thread polls an empty queue before it sleeps.
    pub fn with_poll(mut self, poll: Duration) -> Block {
        self.poll = poll;
        self
    }

    /// Lets the poll window adapt (see [`crate::virtio::queue`]): for a run whose vCPUs
    /// leave the device thread no core of its own, where a window that never catches a
    /// request only delays the vCPU it preempted. Off by default: with a spare core the
    /// full window is what keeps a polling guest free of exits.
    pub fn with_adaptive_poll(mut self, adaptive: bool) -> Block {
        self.adaptive_poll = adaptive;
        self
    }

    /// Pins the device thread to `cpu`.
    pub fn with_cpu(mut self, cpu: Option<usize>) -> Block {
        self.cpu = cpu;
        self
    }

    /// The flag that ends the device for good, to be set without its lock (see the
    /// field's docs) before it is stopped.
    pub fn end_flag(&self) -> StopFlag {
        self.ended.clone()
    }

    /// Where the queue runs ([`Execution`]).
    pub fn execution(&self) -> Execution {
        self.execution
    }

    /// Where the device says, in one line, why its queue stopped working (a driver
    /// bug); without one it says nothing and only shows DEVICE_NEEDS_RESET.
    pub fn with_report(mut self, report: Report) -> Block {
        self.report = Some(report);
        self
    }

    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// In [`Execution::Inline`], answers every available request now; returns how
    /// many. Does nothing otherwise.
    pub fn process_queue(&mut self) -> usize {
        self.running
            .inline()
            .map_or(0, |runner| runner.process_queue())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Every field we expose is read-only (no CONFIG_WCE).
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.reset();
        let got = activation.queues.len();
        let (Some(queue), Some(kick)) = (
            activation.queues.into_iter().next(),
            activation.kicks.into_iter().next(),
        ) else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        // One flag for the thread, the runner and the handler: a stop (the run ends)
        // or a reset (the guest's) interrupts even a request moving gigabytes. Inline,
        // the reset comes from the very thread that runs the queue, so only the end of
        // the run can interrupt it.
        let stop = match self.execution {
            Execution::Inline => self.ended.clone(),
            Execution::OwnThread => StopFlag::default(),
        };
        let handler = BlockHandler {
            disk: self.disk.clone(),
            stop: stop.clone(),
        };
        let needs_reset = activation.needs_reset.clone();
        let mut runner = QueueRunner::new(activation.mem, queue, handler, activation.needs_reset);
        runner.set_poll(self.poll);
        runner.set_adaptive_poll(self.adaptive_poll);
        runner.set_stop(stop.clone());
        if let Some(report) = &self.report {
            runner.set_report(report.clone());
        }
        let report = self.report.clone();
        let spec = ThreadSpec {
            name: "virtio-blk",
            stop,
            cpu: self.cpu,
            on_failure: Box::new(move |why| {
                if let Some(report) = &report {
                    report(why);
                }
                needs_reset.raise();
            }),
        };
        self.running = Running::start(
            self.execution,
            runner,
            vec![kick],
            spec,
            |runner, mut kicks| QueueSubscriber::new(vec![(runner, kicks.remove(0))]),
        )?;
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        self.running.notify(queue, |runner| {
            runner.process_queue();
        });
    }

    fn reset(&mut self) {
        // Joins the device thread, if any, before the queues go away.
        self.running = Running::Stopped;
    }
}
