//! [`NetDevice`]: the virtio-net device over its virtio-mmio window, polled.
//!
//! Receive: every receive buffer is one device-writable descriptor big enough for a
//! whole TSO super-frame (12-byte header + 65550 bytes: without MRG_RXBUF a smaller
//! one makes the device give up), posted once at start and re-posted when the stack
//! has consumed it. Where the buffers live is the caller's choice ([`RxMemory`]): the
//! private heap when the stack shares the compartment, the channel heap with the
//! stack's compartment otherwise, so the device writes straight into memory the
//! stack reads. Transmit: a fixed set of small private buffers, one descriptor each
//! (header + frame), reclaimed lazily from the used ring.
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
use crate::mmio::{F_GUEST_CSUM, F_GUEST_TSO4, F_MAC};

/// Bytes of one receive buffer: header + the largest frame GUEST_TSO4 allows.
pub const RX_BUF: usize = HDR_LEN + 65550;
/// Bytes of one transmit buffer: header + an Ethernet frame of MTU 1500.
pub const TX_BUF: usize = 2048;
/// Largest Ethernet frame the stack may send (the device takes no TSO from us).
pub const TX_MTU: usize = 1514;
/// Transmit buffers.
const TX_COUNT: u16 = 64;
const RX_QUEUE: u32 = 0;
const TX_QUEUE: u32 = 1;

const WANTED: u64 = F_VERSION_1 | F_MAC | F_GUEST_CSUM | F_GUEST_TSO4 | F_RING_EVENT_IDX;

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
    /// GUEST_TSO4 and RING_EVENT_IDX, and posts up to `rx_count` receive buffers from
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
        device.negotiate(WANTED, 0)?;
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
        for id in 0..TX_COUNT.min(self.tx.size()) {
            let buf = heap_alloc(TX_BUF)?;
            self.tx
                .set_desc(id, buf.as_ptr() as u64, TX_BUF as u32, false, None);
            self.tx_bufs.push(buf);
            self.tx_free.push(id);
        }
        Some(())
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
        while let Some((id, _)) = self.tx.pop_used() {
            if (id as usize) < self.tx_bufs.len() && !self.tx_free.contains(&(id as u16)) {
                self.tx_free.push(id as u16);
            }
        }
        self.tx_free.pop()
    }

    /// The frame area (after the header) of transmit buffer `id`, [`TX_MTU`] bytes.
    pub fn tx_frame(&mut self, id: u16) -> &mut [u8] {
        let buf = self.tx_bufs[usize::from(id)];
        // SAFETY: transmit buffer `id` is TX_BUF (>= HDR_LEN + TX_MTU) bytes of private
        // heap that the device does not read while the id is not posted (it came from
        // `tx_alloc` and was not sent yet), and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(buf.as_ptr().add(HDR_LEN), TX_MTU) }
    }

    /// Sends the first `len` bytes of transmit buffer `id`'s frame area.
    pub fn tx_send(&mut self, id: u16, len: usize) {
        let buf = self.tx_bufs[usize::from(id)];
        // SAFETY: as in `tx_frame`: the header area of a buffer we own.
        unsafe { core::ptr::write_bytes(buf.as_ptr(), 0, HDR_LEN) };
        self.tx.set_len(id, (HDR_LEN + len.min(TX_MTU)) as u32);
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
