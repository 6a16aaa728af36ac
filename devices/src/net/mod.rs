//! virtio-net over a tap (or any [`Backend`]).
//!
//! # The contract with the guest driver
//!
//! - virtio-mmio version 2, device id 1 (`flexos_abi::DEVICE_NET`). The monitor gives
//!   the window to the compartment hosting the image's `netdev` component; it follows
//!   the disk's window when there is a disk (the disk is device 0), and the owner's
//!   boot info lists it with kind `DEVICE_NET`.
//! - Two queues, both of at most [`QUEUE_SIZE`] (256) entries: 0 = receiveq,
//!   1 = transmitq.
//! - Features offered: VIRTIO_F_VERSION_1 (required), VIRTIO_NET_F_MAC,
//!   VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GUEST_CSUM,
//!   VIRTIO_NET_F_GUEST_TSO4, VIRTIO_RING_F_EVENT_IDX. Not offered: MRG_RXBUF, STATUS,
//!   CTRL_VQ, MTU, HOST_TSO6, HOST_UFO, INDIRECT_DESC.
//!   - CSUM (transmit checksum offload): the header of a transmitted frame goes to the
//!     tap unchanged, so a frame with VIRTIO_NET_HDR_F_NEEDS_CSUM and
//!     csum_start/csum_offset gets its checksum completed by the host kernel.
//!   - HOST_TSO4 (with CSUM): likewise, a transmitted TCP segment of up to 64 KiB with
//!     gso_type TCPV4 and gso_size (the MSS) is cut into segments by the host kernel
//!     (a tap takes GSO frames from its writer whatever TUNSETOFFLOAD says; that
//!     call is about what it hands its reader). A header the kernel refuses is a
//!     refused frame (`tx_errors`).
//!   - GUEST_CSUM / GUEST_TSO4 become TUNSETOFFLOAD(TUN_F_CSUM / TUN_F_TSO4) at
//!     DRIVER_OK (TSO4 only together with GUEST_CSUM). Received frames may then carry
//!     NEEDS_CSUM (only the pseudo-header sum is in the TCP/UDP checksum field: do not
//!     verify it) and, with TSO4, be TCP segments of up to 64 KiB
//!     (gso_type TCPV4, gso_size the MSS).
//! - Config space: `mac[6]` at offset 0 (read-only). Nothing else.
//! - Every frame on either queue is preceded by the 12-byte `virtio_net_hdr_v1`
//!   ([`VNET_HDR_LEN`]); on receive the device writes `num_buffers` = 1.
//! - Receive chains are device-writable only and hold header and the largest frame:
//!   12 + 65550 bytes when GUEST_TSO4 was negotiated, 12 + 1514 otherwise
//!   ([`receive_need`]). One frame per chain; the used length is header + frame. A
//!   smaller chain is a driver bug.
//! - Transmit chains are device-readable only, header included, at most 12 + 65550
//!   bytes in all; the used length is 0. A frame the host refuses (e.g. a bad GSO
//!   header) is consumed and counted (`tx_errors`).
//! - Driver bugs (a chain that loops or leaves the table, a descriptor outside the
//!   device's memory, a wrong direction, a too small receive chain, a too short or
//!   too long transmit chain, an available index more than a queue ahead): the device
//!   puts that chain on the used ring with length 0, raises DEVICE_NEEDS_RESET, reports
//!   the reason once and stops both queues until the driver resets it. No frame is
//!   truncated, and none is dropped while the guest has no receive buffer: it waits in
//!   the tap.
//! - Guest -> device: QueueNotify writes (ioeventfds in the monitor). The device asks
//!   for them only when it sleeps: with EVENT_IDX it publishes `avail_event` before it
//!   sleeps; a transmit kick is wanted when it sleeps, a receive kick only while it has
//!   no receive buffer.
//! - Device -> guest: no interrupts. After putting buffers on a used ring, the device
//!   writes its [`Interrupt`](crate::virtio::Interrupt) EventFd (the owner's doorbell in
//!   the monitor) if virtio-queue's `needs_notification` says so: with EVENT_IDX when
//!   the used index passes the driver's `used_event`, without it after every batch. A
//!   driver that polls its used rings sets `used_event` far ahead (or ignores the
//!   doorbell); one that sleeps with the sleep hypercall sets it to the used index it
//!   waits for.
//!
//! # Inside
//!
//! One device thread ([`subscriber::NetSubscriber`] running a [`worker::Worker`]) in an epoll loop over the two kick
//! EventFds, the stop EventFd and the backend's descriptor. Receive `readv`s from the
//! backend straight into the guest's buffers, until the backend has no frame or the
//! guest no buffer; then the backend leaves the epoll set until the guest's receive kick
//! (no busy wake-ups, no dropped frames). Transmit `writev`s each chain. After a batch
//! the thread keeps polling both rings for the poll time (default [`DEFAULT_POLL`]),
//! then re-enables notifications and sleeps.

pub mod backend;
pub mod chain;
pub mod subscriber;
pub mod tap;
#[cfg(test)]
mod tests;
pub mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_MAC,
};
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;

pub use self::backend::{Backend, SocketBackend};
use self::subscriber::NetSubscriber;
pub use self::tap::{Tap, TapError};
use self::worker::{Worker, WorkerConfig};
use crate::runner::{Running, ThreadSpec};
use crate::virtio::{ActivateError, Activation, VirtioDevice};

/// Size of each queue (the driver may choose a smaller power of two).
pub const QUEUE_SIZE: u16 = 256;
/// `struct virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers.
pub const VNET_HDR_LEN: usize = 12;
/// The largest frame with GUEST_TSO4: a 64 KiB IP packet and its Ethernet header.
pub const MAX_FRAME_LEN: usize = 65550;
/// The largest frame without: a 1500-byte MTU and the Ethernet header.
pub const ETH_FRAME_LEN: usize = 1514;
/// The receive queue's index.
pub const RX_QUEUE: u16 = 0;
/// The transmit queue's index.
pub const TX_QUEUE: u16 = 1;
/// How long the device thread polls both rings after a batch before it sleeps.
pub const DEFAULT_POLL: Duration = Duration::from_micros(20);
/// The MAC address the monitor gives the guest unless told otherwise.
pub const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Every feature the device offers (see the module docs).
pub const FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_NET_F_MAC)
    | (1 << VIRTIO_NET_F_CSUM)
    | (1 << VIRTIO_NET_F_HOST_TSO4)
    | (1 << VIRTIO_NET_F_GUEST_CSUM)
    | (1 << VIRTIO_NET_F_GUEST_TSO4)
    | (1 << VIRTIO_RING_F_EVENT_IDX);

/// The bytes a receive chain must hold under `acked` features.
pub fn receive_need(acked: u64) -> u32 {
    let frame = if acked & (1 << VIRTIO_NET_F_GUEST_TSO4) != 0 {
        MAX_FRAME_LEN
    } else {
        ETH_FRAME_LEN
    };
    (VNET_HDR_LEN + frame) as u32
}

pub use crate::report::Report;

/// Counters, shared with whoever holds [`Net::stats`].
#[derive(Debug, Default)]
pub struct NetStats {
    /// Frames (and their bytes, headers excluded) handed to the guest.
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames (and bytes, headers excluded) taken from the guest and sent.
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Frames longer than the negotiated maximum, dropped (the host's MTU is too big).
    pub rx_oversized: AtomicU64,
    /// Backend read failures.
    pub rx_errors: AtomicU64,
    /// Transmitted frames the backend refused.
    pub tx_errors: AtomicU64,
    /// Driver bugs that stopped the device (DEVICE_NEEDS_RESET).
    pub faults: AtomicU64,
    /// The last one, in words.
    pub fault: Mutex<Option<String>>,
}

impl NetStats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// The counters in one line, for logs.
    pub fn summary(&self) -> String {
        format!(
            "rx_frames={} rx_bytes={} tx_frames={} tx_bytes={} rx_oversized={} rx_errors={} tx_errors={} faults={}",
            Self::get(&self.rx_frames),
            Self::get(&self.rx_bytes),
            Self::get(&self.tx_frames),
            Self::get(&self.tx_bytes),
            Self::get(&self.rx_oversized),
            Self::get(&self.rx_errors),
            Self::get(&self.tx_errors),
            Self::get(&self.faults),
        )
    }

    /// The last fault's text, if any.
    pub fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

pub use crate::runner::Execution;

/// A virtio-net device model; put it in a [`crate::virtio::mmio::MmioTransport`].
pub struct Net<B: Backend> {
    backend: Arc<B>,
    mac: [u8; 6],
    execution: Execution,
    poll: Duration,
    stats: Arc<NetStats>,
    report: Report,
    cpu: Option<usize>,
    running: Running<Worker<B>>,
}

impl<B: Backend> Net<B> {
    /// A device with MAC address `mac` in front of `backend`. Reports go to stderr as
    /// `virtio-net: ...` unless [`Self::with_report`] says otherwise.
    pub fn new(backend: B, mac: [u8; 6]) -> Self {
        Net {
            backend: Arc::new(backend),
            mac,
            execution: Execution::OwnThread,
            poll: DEFAULT_POLL,
            stats: Arc::new(NetStats::default()),
            report: Arc::new(|text: &str| {
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "virtio-net: {text}");
            }),
            cpu: None,
            running: Running::Stopped,
        }
    }

    pub fn with_execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// How long the device thread polls after a batch before it sleeps.
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Pins the device thread to `cpu`.
    pub fn with_cpu(mut self, cpu: Option<usize>) -> Self {
        self.cpu = cpu;
        self
    }

    /// Where the device's one-line reports go (driver bugs, backend trouble).
    pub fn with_report(mut self, report: Report) -> Self {
        self.report = report;
        self
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// In [`Execution::Inline`], moves every frame it can now. Does nothing otherwise.
    pub fn process(&mut self) {
        if let Some(worker) = self.running.inline() {
            worker.run();
        }
    }
}

impl<B: Backend> VirtioDevice for Net<B> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.mac.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The MAC is read-only (no CTRL_MAC_ADDR, and modern drivers never write it).
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.reset();
        let got = activation.queues.len();
        let mut queues = activation.queues.into_iter();
        let mut kicks = activation.kicks.into_iter();
        let (Some(rx), Some(tx), Some(rx_kick), Some(tx_kick), None) = (
            queues.next(),
            queues.next(),
            kicks.next(),
            kicks.next(),
            queues.next(),
        ) else {
            return Err(ActivateError::QueueCount { expected: 2, got });
        };
        let acked = activation.acked_features;
        let csum = acked & (1 << VIRTIO_NET_F_GUEST_CSUM) != 0;
        let tso4 = acked & (1 << VIRTIO_NET_F_GUEST_TSO4) != 0;
        self.backend
            .set_offload(csum, tso4)
            .map_err(ActivateError::Backend)?;
        let needs_reset = activation.needs_reset.clone();
        let worker = Worker::new(WorkerConfig {
            mem: activation.mem,
            rx,
            tx,
            backend: self.backend.clone(),
            interrupt: activation.interrupt,
            needs_reset: activation.needs_reset.clone(),
            stats: self.stats.clone(),
            report: self.report.clone(),
            rx_need: receive_need(acked),
            poll: self.poll,
        });
        let (report, stats) = (self.report.clone(), self.stats.clone());
        let spec = ThreadSpec {
            name: "virtio-net",
            stop: crate::virtio::StopFlag::default(),
            cpu: self.cpu,
            on_failure: Box::new(move |why| {
                report(why);
                stats
                    .faults
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                needs_reset.raise();
            }),
        };
        self.running = Running::start(
            self.execution,
            worker,
            vec![rx_kick, tx_kick],
            spec,
            |worker, mut kicks| {
                let tx_kick = kicks.pop().expect("two kicks");
                let rx_kick = kicks.pop().expect("two kicks");
                NetSubscriber::new(worker, rx_kick, tx_kick)
            },
        )?;
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        self.running.notify(queue, |worker| {
            worker.run();
        });
    }

    fn reset(&mut self) {
        // Joins the device thread, if any, before the queues go away. Frames the guest
        // did not take stay in the backend.
        self.running = Running::Stopped;
    }
}
