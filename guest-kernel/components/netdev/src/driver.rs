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

use crate::frame::HDR_LEN;
use crate::mmio::*;
use crate::queue::{MAX_SIZE, Queue};

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
    NotVirtio,
    WrongDevice(u32),
    Features(u64),
    FeaturesRefused,
    NoQueue(u32),
    NoMemory,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            StartError::NoDevice => {
                write!(f, "no network device attached (run with --net tap=NAME)")
            }
            StartError::NotVirtio => write!(f, "the window holds no virtio-mmio version 2 device"),
            StartError::WrongDevice(id) => {
                write!(f, "the device is virtio id {id}, not a network card")
            }
            StartError::Features(have) => write!(
                f,
                "the device lacks features {:#x} (offers {have:#x})",
                WANTED & !have
            ),
            StartError::FeaturesRefused => write!(f, "the device refused the negotiated features"),
            StartError::NoQueue(q) => write!(f, "the device has no queue {q}"),
            StartError::NoMemory => write!(f, "no memory for the receive buffers"),
        }
    }
}

/// A started virtio-net device.
pub struct NetDevice {
    regs: Regs,
    rx: Queue,
    tx: Queue,
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
        if dev.mmio_size < 0x200 {
            return Err(StartError::NotVirtio);
        }
        let base = NonNull::new(dev.mmio_base as usize as *mut u8).ok_or(StartError::NotVirtio)?;
        // SAFETY: the monitor maps this device's window at mmio_base (checked >= 0x200
        // bytes) for the compartment's whole life; only this driver touches it, and
        // `start` runs once per run (the caller keeps the device).
        let regs = unsafe { Regs::new(base, dev.mmio_size as usize) };
        if regs.read(MAGIC_VALUE) != MAGIC || regs.read(VERSION) != MODERN_VERSION {
            return Err(StartError::NotVirtio);
        }
        let id = regs.read(DEVICE_ID);
        if id != 1 {
            return Err(StartError::WrongDevice(id));
        }
        regs.write(STATUS, 0);
        regs.write(STATUS, STATUS_ACKNOWLEDGE);
        regs.write(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        regs.write(DEVICE_FEATURES_SEL, 0);
        let low = u64::from(regs.read(DEVICE_FEATURES));
        regs.write(DEVICE_FEATURES_SEL, 1);
        let offered = low | u64::from(regs.read(DEVICE_FEATURES)) << 32;
        if offered & WANTED != WANTED {
            regs.write(STATUS, STATUS_FAILED);
            return Err(StartError::Features(offered));
        }
        regs.write(DRIVER_FEATURES_SEL, 0);
        regs.write(DRIVER_FEATURES, WANTED as u32);
        regs.write(DRIVER_FEATURES_SEL, 1);
        regs.write(DRIVER_FEATURES, (WANTED >> 32) as u32);
        let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        regs.write(STATUS, status);
        if regs.read(STATUS) & STATUS_FEATURES_OK == 0 {
            regs.write(STATUS, STATUS_FAILED);
            return Err(StartError::FeaturesRefused);
        }
        let rx = setup_queue(&regs, RX_QUEUE)?;
        let tx = setup_queue(&regs, TX_QUEUE)?;
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = regs.config_u8(i);
        }
        let mut nic = NetDevice {
            regs,
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
        let rx_count = rx_count.min(nic.rx.size());
        for id in 0..rx_count {
            let buf = memory.alloc(RX_BUF).ok_or(StartError::NoMemory)?;
            nic.rx
                .set_desc(id, buf.as_ptr() as u64, RX_BUF as u32, true);
            nic.rx.push(id);
            nic.rx_bufs.push(buf);
        }
        for id in 0..TX_COUNT.min(nic.tx.size()) {
            let buf = heap_alloc(TX_BUF).ok_or(StartError::NoMemory)?;
            nic.tx
                .set_desc(id, buf.as_ptr() as u64, TX_BUF as u32, false);
            nic.tx_bufs.push(buf);
            nic.tx_free.push(id);
        }
        nic.rx.disarm();
        nic.regs.write(STATUS, status | STATUS_DRIVER_OK);
        nic.rx.publish();
        nic.kick(RX_QUEUE);
        Ok(nic)
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn kick(&mut self, queue: u32) {
        self.kicks += 1;
        self.regs.write(QUEUE_NOTIFY, queue);
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
            if usize::from(id) < self.rx_bufs.len() {
                let len = (len as usize).min(RX_BUF);
                self.rx_frames += 1;
                self.rx_bytes += len as u64;
                return Some((id, len));
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
            if usize::from(id) < self.tx_bufs.len() && !self.tx_free.contains(&id) {
                self.tx_free.push(id);
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

fn setup_queue(regs: &Regs, index: u32) -> Result<Queue, StartError> {
    regs.write(QUEUE_SEL, index);
    let max = regs.read(QUEUE_NUM_MAX);
    if max == 0 {
        return Err(StartError::NoQueue(index));
    }
    // The largest power of two the device and this driver both allow.
    let size = 1u16 << (max.min(u32::from(MAX_SIZE))).ilog2();
    let q = Queue::new(size);
    regs.write(QUEUE_NUM, u32::from(size));
    regs.write64(QUEUE_DESC_LOW, QUEUE_DESC_HIGH, q.desc_addr());
    regs.write64(QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, q.avail_addr());
    regs.write64(QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, q.used_addr());
    regs.write(QUEUE_READY, 1);
    Ok(q)
}
