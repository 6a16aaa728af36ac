//! [`NetDevice`]: the virtio-net device over its virtio-mmio window, polled.
//!
//! Receive: every receive buffer is one device-writable descriptor big enough for a
//! whole TSO super-frame (12-byte header + 65550 bytes: without MRG_RXBUF a smaller
//! one makes the device give up), posted once at start and re-posted when the stack
//! has consumed it. Where the buffers live is the caller's choice ([`RxMemory`]): the
//! private heap when the stack shares the compartment, the channel heap with the
//! stack's compartment otherwise, so the device writes straight into memory the
//! stack reads. Transmit: a fixed set of private buffers, one descriptor each (header
//! and frame), reclaimed lazily from the used ring; when the device offers CSUM and
//! HOST_TSO4 they hold 64 KiB frames, which the host cuts into segments
//! ([`NetDevice::tso`], [`crate::frame::tx_header`]).
//!
//! Notifications: the driver never takes interrupts; before its compartment sleeps it
//! arms used_event on the receive queue ([`NetDevice::arm`]), so the device rings the
//! compartment's doorbell on the next frame. Kicks (QueueNotify) are sent only when
//! the device asked for them through avail_event.

use alloc::alloc::{Layout, alloc_zeroed};
use alloc::vec::Vec;
use core::ptr::NonNull;

use flexos_kernel::abi::DEVICE_NET;
use flexos_kernel::boot_info;

use flexos_virtio::mmio::{F_RING_EVENT_IDX, F_VERSION_1};
use flexos_virtio::queue::MAX_SIZE;
use flexos_virtio::{Device, SplitQueue};

use crate::frame::HDR_LEN;
use crate::mmio::{F_CSUM, F_GUEST_CSUM, F_GUEST_TSO4, F_HOST_TSO4, F_MAC};

/// Bytes of one receive buffer: header + the largest frame GUEST_TSO4 allows.
pub const RX_BUF: usize = HDR_LEN + 65550;
/// Bytes of one transmit buffer: header + an Ethernet frame of MTU 1500.
pub const TX_BUF: usize = 2048;
/// Largest Ethernet frame the stack may send without TSO.
pub const TX_MTU: usize = 1514;
/// Largest Ethernet frame with TSO: a 64 KiB IP packet and its Ethernet header.
pub const TSO_MTU: usize = 14 + 65535;
/// Transmit buffers.
const TX_COUNT: u16 = 64;
/// Transmit buffers with TSO (64 KiB each: 2 MiB of private memory, room for the
/// 256 KiB send buffers of a few streams in flight).
const TSO_COUNT: u16 = 32;
const RX_QUEUE: u32 = 0;
const TX_QUEUE: u32 = 1;

const WANTED: u64 = F_VERSION_1 | F_MAC | F_GUEST_CSUM | F_GUEST_TSO4 | F_RING_EVENT_IDX;
/// Taken when offered: transmit checksum offload and TSO (a monitor without them
/// still works, with 1514-byte frames).
const OPTIONAL: u64 = F_CSUM | F_HOST_TSO4;

/// Where receive buffers come from: `alloc(len)` returns the address of `len` bytes
/// the device may write and this compartment may read, alive for the whole run.
pub trait RxMemory {
    fn alloc(&mut self, len: usize) -> Option<NonNull<u8>>;
}

/// Receive buffers from the private heap.
pub struct HeapRx;

impl RxMemory for HeapRx {
    fn alloc(&mut self, len: usize) -> Option<NonNull<u8>> {
        heap_alloc(len)
    }
}

fn heap_alloc(len: usize) -> Option<NonNull<u8>> {
    let layout = Layout::from_size_align(len, 64).ok()?;
    // SAFETY: `len` is non-zero (callers pass buffer sizes).
    NonNull::new(unsafe { alloc_zeroed(layout) })
}

/// Why the device could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    NoDevice,
    /// The handshake or a queue failed (the virtio core says why).
    Virtio(flexos_virtio::StartError),
    NoMemory,
}

impl From<flexos_virtio::StartError> for StartError {
    fn from(e: flexos_virtio::StartError) -> Self {
        StartError::Virtio(e)
    }
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            StartError::NoDevice => {
                write!(f, "no network device attached (run with --net tap=NAME)")
            }
            StartError::Virtio(e) => write!(f, "{e}"),
            StartError::NoMemory => write!(
                f,
                "no memory for the receive buffers (with netdev apart from net they live in \
                 the heap of their channel: give the run a larger --shared-mem, e.g. 64)"
            ),
        }
    }
}

/// A started virtio-net device.
pub struct NetDevice {
    device: Device,
    rx: SplitQueue,
    tx: SplitQueue,
    rx_bufs: Vec<NonNull<u8>>,
    tx_bufs: Vec<NonNull<u8>>,
    tx_free: Vec<u16>,
    /// Largest frame a transmit buffer holds ([`TX_MTU`], or [`TSO_MTU`] with TSO).
    tx_mtu: usize,
    mac: [u8; 6],
    /// Frames received and sent, for the stack's statistics.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub kicks: u64,
}

// SAFETY: the raw pointers are this compartment's MMIO window and heap/channel memory,
// valid for the whole run; a compartment has one thread, and the device is only ever
// reached through `&mut NetDevice`.
unsafe impl Send for NetDevice {}

impl NetDevice {
    /// Finds this compartment's network device, negotiates VERSION_1, MAC, GUEST_CSUM,
    /// GUEST_TSO4 and RING_EVENT_IDX (and CSUM with HOST_TSO4 when offered), and posts up to `rx_count` receive buffers from
    /// `memory`.
    pub fn start(memory: &mut dyn RxMemory, rx_count: u16) -> Result<NetDevice, StartError> {
        let dev = boot_info()
            .devices()
            .iter()
            .find(|d| d.kind == DEVICE_NET)
            .ok_or(StartError::NoDevice)?;
        // SAFETY: the monitor maps this device's window at mmio_base for the
        // compartment's whole life; only this driver touches it, and `start` runs once
        // per run (the caller keeps the device).
        let mut device = unsafe { Device::open(dev, DEVICE_NET) }?;
        let features = device.negotiate(WANTED, OPTIONAL)?;
        let tso = features & (F_CSUM | F_HOST_TSO4) == F_CSUM | F_HOST_TSO4;
        let rx = device.queue(RX_QUEUE, 1, MAX_SIZE)?;
        let tx = device.queue(TX_QUEUE, 1, MAX_SIZE)?;
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = device.config_u8(i);
        }
        let mut nic = NetDevice {
            device,
            rx,
            tx,
            rx_bufs: Vec::new(),
            tx_bufs: Vec::new(),
            tx_free: Vec::new(),
            tx_mtu: if tso { TSO_MTU } else { TX_MTU },
            mac,
            rx_frames: 0,
            rx_bytes: 0,
            tx_frames: 0,
            kicks: 0,
        };
        if nic.post_buffers(memory, rx_count).is_none() {
            nic.device.abandon();
            return Err(StartError::NoMemory);
        }
        nic.device.driver_ok()?;
        nic.rx.publish();
        nic.kick(RX_QUEUE);
        Ok(nic)
    }

    /// Posts up to `rx_count` receive buffers from `memory` and sets up the transmit
    /// buffers; `None` without memory.
    fn post_buffers(&mut self, memory: &mut dyn RxMemory, rx_count: u16) -> Option<()> {
        for id in 0..rx_count.min(self.rx.size()) {
            let buf = memory.alloc(RX_BUF)?;
            self.rx
                .set_desc(id, buf.as_ptr() as u64, RX_BUF as u32, true, None);
            self.rx.push(id);
            self.rx_bufs.push(buf);
        }
        let (count, len) = if self.tso() {
            (TSO_COUNT, HDR_LEN + TSO_MTU)
        } else {
            (TX_COUNT, TX_BUF)
        };
        for id in 0..count.min(self.tx.size()) {
            let buf = heap_alloc(len)?;
            self.tx
                .set_desc(id, buf.as_ptr() as u64, len as u32, false, None);
            self.tx_bufs.push(buf);
            self.tx_free.push(id);
        }
        Some(())
    }

    /// Did the device take CSUM and HOST_TSO4? Then frames of up to [`TSO_MTU`] go
    /// out with a header from [`crate::frame::tx_header`] ([`NetDevice::tx_send_with`]).
    pub fn tso(&self) -> bool {
        self.tx_mtu == TSO_MTU
    }

    /// Largest frame [`NetDevice::tx_frame`] holds.
    pub fn tx_mtu(&self) -> usize {
        self.tx_mtu
    }

    /// Is a transmit buffer free (reclaiming what the device has sent)? The stack asks
    /// before it builds a frame, so a busy device makes it wait rather than drop.
    pub fn tx_ready(&mut self) -> bool {
        self.reclaim();
        !self.tx_free.is_empty()
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn kick(&mut self, queue: u32) {
        self.kicks += 1;
        self.device.notify(queue);
    }

    /// Number of receive buffers.
    pub fn rx_count(&self) -> usize {
        self.rx_bufs.len()
    }

    /// Address of receive buffer `id` (header first).
    pub fn rx_buffer(&self, id: u16) -> Option<NonNull<u8>> {
        self.rx_bufs.get(usize::from(id)).copied()
    }

    /// The next received buffer: its id and how many bytes (header included) the device
    /// wrote. Entries naming no buffer of ours are skipped; a length is clamped to the
    /// buffer. The buffer is ours until [`NetDevice::rx_release`].
    pub fn rx_pop(&mut self) -> Option<(u16, usize)> {
        while let Some((id, len)) = self.rx.pop_used() {
            if (id as usize) < self.rx_bufs.len() {
                let len = (len as usize).min(RX_BUF);
                self.rx_frames += 1;
                self.rx_bytes += len as u64;
                return Some((id as u16, len));
            }
        }
        None
    }

    /// Is a received frame waiting?
    pub fn rx_pending(&self) -> bool {
        self.rx.has_used()
    }

    /// Gives receive buffer `id` back to the device.
    pub fn rx_release(&mut self, id: u16) {
        if usize::from(id) >= self.rx_bufs.len() {
            return;
        }
        self.rx.push(id);
        if self.rx.publish() {
            self.kick(RX_QUEUE);
        }
    }

    /// A free transmit buffer (reclaiming what the device has sent): its id.
    pub fn tx_alloc(&mut self) -> Option<u16> {
        self.reclaim();
        self.tx_free.pop()
    }

    /// Takes back the transmit buffers the device has sent.
    fn reclaim(&mut self) {
        while let Some((id, _)) = self.tx.pop_used() {
            if (id as usize) < self.tx_bufs.len() && !self.tx_free.contains(&(id as u16)) {
                self.tx_free.push(id as u16);
            }
        }
    }

    /// The frame area (after the header) of transmit buffer `id`,
    /// [`NetDevice::tx_mtu`] bytes.
    pub fn tx_frame(&mut self, id: u16) -> &mut [u8] {
        let buf = self.tx_bufs[usize::from(id)];
        // SAFETY: transmit buffer `id` is HDR_LEN + tx_mtu bytes of private heap
        // (post_buffers) that the device does not read while the id is not posted (it
        // came from `tx_alloc` and was not sent yet), and `&mut self` makes the borrow
        // unique.
        unsafe { core::slice::from_raw_parts_mut(buf.as_ptr().add(HDR_LEN), self.tx_mtu) }
    }

    /// Sends the first `len` bytes of transmit buffer `id`'s frame area, with an
    /// all-zero header (the frame carries its own checksums).
    pub fn tx_send(&mut self, id: u16, len: usize) {
        self.tx_send_with(id, len, [0; HDR_LEN]);
    }

    /// Sends the first `len` bytes of transmit buffer `id`'s frame area with header
    /// `hdr` ([`crate::frame::tx_header`], with TSO).
    pub fn tx_send_with(&mut self, id: u16, len: usize, hdr: [u8; HDR_LEN]) {
        let buf = self.tx_bufs[usize::from(id)];
        // SAFETY: as in `tx_frame`: the header area of a buffer we own.
        unsafe { core::ptr::copy_nonoverlapping(hdr.as_ptr(), buf.as_ptr(), HDR_LEN) };
        self.tx.set_len(id, (HDR_LEN + len.min(self.tx_mtu)) as u32);
        self.tx.push(id);
        self.tx_frames += 1;
        if self.tx.publish() {
            self.kick(TX_QUEUE);
        }
    }

    /// Before sleeping: asks for a doorbell on the next received frame; `true` if one
    /// is already waiting (do not sleep).
    pub fn arm(&self) -> bool {
        self.rx.arm()
    }

    /// After waking: no doorbells while we poll.
    pub fn disarm(&self) {
        self.rx.disarm()
    }
}
