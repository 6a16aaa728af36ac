//! The virtio-mmio transport, version 2 ("modern"): the register file a guest driver
//! sees in the device's MMIO window.
//!
//! The monitor forwards every MMIO exit in the window to [`MmioTransport::read`] and
//! [`MmioTransport::write`] (offsets relative to the window base). Neither panics on
//! any offset or length: registers answer only aligned 32-bit accesses (others read as
//! zero and write nothing), config space (from 0x100) takes any width. A driver that
//! breaks the initialisation sequence or programs a queue the device cannot use gets
//! DEVICE_NEEDS_RESET in the status register and nothing else happens until it writes
//! 0 to the status register.

use virtio_bindings::bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Activation, GuestMemory, Interrupt, NeedsReset, VirtioDevice};

// The values a guest driver checks (magic, version, vendor, window) are the guest
// ABI's; the monitor decodes registers with the spec's own names (virtio-bindings),
// and `spec_agrees` below proves the two tables are the same at compile time.
pub use flexos_abi::virtio_mmio::{
    MAGIC as MMIO_MAGIC, VENDOR_ID, VERSION as MMIO_VERSION, WINDOW_SIZE as MMIO_WINDOW_SIZE,
};
/// Offset of QueueNotify in the window: register each queue's kick EventFd as a KVM
/// ioeventfd at `base + QUEUE_NOTIFY_OFFSET`, 4 bytes, datamatch = the queue index.
pub const QUEUE_NOTIFY_OFFSET: u64 = flexos_abi::virtio_mmio::reg::QUEUE_NOTIFY as u64;

/// Every register offset and status bit the guest's drivers use (flexos-abi) equals
/// the spec's (virtio-bindings); a mismatch fails the build, not a boot.
mod spec_agrees {
    use flexos_abi::virtio_mmio as abi;
    use virtio_bindings::bindings::virtio_config as cfg;
    use virtio_bindings::bindings::virtio_mmio as spec;
    use virtio_bindings::bindings::virtio_ring as ring;

    macro_rules! same {
        ($($ours:expr => $theirs:expr),* $(,)?) => {
            $(const _: () = assert!($ours as u64 == $theirs as u64);)*
        };
    }

    same! {
        abi::reg::MAGIC_VALUE => spec::VIRTIO_MMIO_MAGIC_VALUE,
        abi::reg::VERSION => spec::VIRTIO_MMIO_VERSION,
        abi::reg::DEVICE_ID => spec::VIRTIO_MMIO_DEVICE_ID,
        abi::reg::VENDOR_ID => spec::VIRTIO_MMIO_VENDOR_ID,
        abi::reg::DEVICE_FEATURES => spec::VIRTIO_MMIO_DEVICE_FEATURES,
        abi::reg::DEVICE_FEATURES_SEL => spec::VIRTIO_MMIO_DEVICE_FEATURES_SEL,
        abi::reg::DRIVER_FEATURES => spec::VIRTIO_MMIO_DRIVER_FEATURES,
        abi::reg::DRIVER_FEATURES_SEL => spec::VIRTIO_MMIO_DRIVER_FEATURES_SEL,
        abi::reg::QUEUE_SEL => spec::VIRTIO_MMIO_QUEUE_SEL,
        abi::reg::QUEUE_NUM_MAX => spec::VIRTIO_MMIO_QUEUE_NUM_MAX,
        abi::reg::QUEUE_NUM => spec::VIRTIO_MMIO_QUEUE_NUM,
        abi::reg::QUEUE_READY => spec::VIRTIO_MMIO_QUEUE_READY,
        abi::reg::QUEUE_NOTIFY => spec::VIRTIO_MMIO_QUEUE_NOTIFY,
        abi::reg::INTERRUPT_STATUS => spec::VIRTIO_MMIO_INTERRUPT_STATUS,
        abi::reg::INTERRUPT_ACK => spec::VIRTIO_MMIO_INTERRUPT_ACK,
        abi::reg::STATUS => spec::VIRTIO_MMIO_STATUS,
        abi::reg::QUEUE_DESC_LOW => spec::VIRTIO_MMIO_QUEUE_DESC_LOW,
        abi::reg::QUEUE_DESC_HIGH => spec::VIRTIO_MMIO_QUEUE_DESC_HIGH,
        abi::reg::QUEUE_DRIVER_LOW => spec::VIRTIO_MMIO_QUEUE_AVAIL_LOW,
        abi::reg::QUEUE_DRIVER_HIGH => spec::VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
        abi::reg::QUEUE_DEVICE_LOW => spec::VIRTIO_MMIO_QUEUE_USED_LOW,
        abi::reg::QUEUE_DEVICE_HIGH => spec::VIRTIO_MMIO_QUEUE_USED_HIGH,
        abi::reg::CONFIG_GENERATION => spec::VIRTIO_MMIO_CONFIG_GENERATION,
        abi::reg::CONFIG => spec::VIRTIO_MMIO_CONFIG,
        abi::STATUS_ACKNOWLEDGE => cfg::VIRTIO_CONFIG_S_ACKNOWLEDGE,
        abi::STATUS_DRIVER => cfg::VIRTIO_CONFIG_S_DRIVER,
        abi::STATUS_DRIVER_OK => cfg::VIRTIO_CONFIG_S_DRIVER_OK,
        abi::STATUS_FEATURES_OK => cfg::VIRTIO_CONFIG_S_FEATURES_OK,
        abi::STATUS_NEEDS_RESET => cfg::VIRTIO_CONFIG_S_NEEDS_RESET,
        abi::STATUS_FAILED => cfg::VIRTIO_CONFIG_S_FAILED,
        abi::F_VERSION_1 => 1u64 << cfg::VIRTIO_F_VERSION_1,
        abi::F_RING_EVENT_IDX => 1u64 << ring::VIRTIO_RING_F_EVENT_IDX,
    }
}

/// Errors building a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("queue {index}: maximum size {size} is not a power of two in 1..=32768")]
    QueueMaxSize { index: usize, size: u16 },
    #[error("cannot create the kick eventfd of queue {index}: {source}")]
    EventFd {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// What the driver programmed into one queue's registers.
#[derive(Clone, Debug, Default)]
struct QueueRegs {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
}

/// The register file of one virtio-mmio device; owns the device model.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    mem: GuestMemory,
    queues: Vec<QueueRegs>,
    kicks: Vec<EventFd>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    needs_reset: NeedsReset,
    config_interrupt_acked: bool,
    shm_select: u32,
    /// Handed (as a clone) to the device on each activation; see [`Self::set_interrupt`].
    interrupt: Option<EventFd>,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Wraps `device`. `mem` is the only memory its queues and buffers may use.
    pub fn new(device: D, mem: GuestMemory) -> Result<Self, TransportError> {
        let mut queues = Vec::new();
        let mut kicks = Vec::new();
        for (index, &size) in device.queue_max_sizes().iter().enumerate() {
            if Queue::new(size).is_err() {
                return Err(TransportError::QueueMaxSize { index, size });
            }
            queues.push(QueueRegs {
                max_size: size,
                size,
                ..QueueRegs::default()
            });
            kicks.push(
                EventFd::new(EFD_NONBLOCK)
                    .map_err(|source| TransportError::EventFd { index, source })?,
            );
        }
        Ok(MmioTransport {
            device,
            mem,
            queues,
            kicks,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            needs_reset: NeedsReset::default(),
            config_interrupt_acked: false,
            shm_select: 0,
            interrupt: None,
        })
    }

    /// The EventFd the device writes when it puts buffers on a used ring and the
    /// driver asked to hear about it (see [`Interrupt`]). The monitor passes a clone of
    /// the owning compartment's doorbell, so a guest sleeping on it wakes up. Takes
    /// effect at the next DRIVER_OK.
    pub fn set_interrupt(&mut self, event: EventFd) {
        self.interrupt = Some(event);
    }

    /// The kick EventFd of queue `index`. The monitor registers it as an ioeventfd on
    /// `base + QUEUE_NOTIFY_OFFSET` with datamatch `index`, so a QueueNotify write
    /// wakes the device thread without an exit to userspace.
    pub fn queue_event(&self, index: usize) -> Option<&EventFd> {
        self.kicks.get(index)
    }

    /// Number of queues (and kick EventFds).
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The status register as the driver reads it.
    pub fn status(&self) -> u32 {
        if self.needs_reset.is_raised() {
            self.status | VIRTIO_CONFIG_S_NEEDS_RESET
        } else {
            self.status
        }
    }

    /// True while the device runs (DRIVER_OK set and no reset since).
    pub fn is_activated(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0
    }

    /// A guest read of `data.len()` bytes at `offset` in the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            self.device
                .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_register(offset as u32).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    /// A guest write of `data` at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            self.device
                .write_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        let Ok(word) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset.is_multiple_of(4) {
            self.write_register(offset as u32, u32::from_le_bytes(word));
        }
    }

    fn selected_queue(&self) -> Option<&QueueRegs> {
        self.queues.get(self.queue_select as usize)
    }

    fn read_register(&self, offset: u32) -> u32 {
        let queue = self.selected_queue();
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_select {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size)),
            VIRTIO_MMIO_QUEUE_NUM => queue.map_or(0, |q| u32::from(q.size)),
            VIRTIO_MMIO_QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready)),
            VIRTIO_MMIO_QUEUE_DESC_LOW => queue.map_or(0, |q| q.desc as u32),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => queue.map_or(0, |q| (q.desc >> 32) as u32),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.map_or(0, |q| q.avail as u32),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => queue.map_or(0, |q| (q.avail >> 32) as u32),
            VIRTIO_MMIO_QUEUE_USED_LOW => queue.map_or(0, |q| q.used as u32),
            VIRTIO_MMIO_QUEUE_USED_HIGH => queue.map_or(0, |q| (q.used >> 32) as u32),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status(),
            VIRTIO_MMIO_STATUS => self.status(),
            // No shared memory regions: a length of all ones means "absent".
            VIRTIO_MMIO_SHM_LEN_LOW
            | VIRTIO_MMIO_SHM_LEN_HIGH
            | VIRTIO_MMIO_SHM_BASE_LOW
            | VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            VIRTIO_MMIO_SHM_SEL => self.shm_select,
            // The config space never changes under the driver.
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_select = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_select = value,
            VIRTIO_MMIO_DRIVER_FEATURES => self.write_driver_features(value),
            VIRTIO_MMIO_QUEUE_SEL => self.queue_select = value,
            VIRTIO_MMIO_QUEUE_NUM
            | VIRTIO_MMIO_QUEUE_READY
            | VIRTIO_MMIO_QUEUE_DESC_LOW
            | VIRTIO_MMIO_QUEUE_DESC_HIGH
            | VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | VIRTIO_MMIO_QUEUE_USED_LOW
            | VIRTIO_MMIO_QUEUE_USED_HIGH => self.write_queue_register(offset, value),
            VIRTIO_MMIO_QUEUE_NOTIFY => self.queue_notify(value),
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.config_interrupt_acked |= value & VIRTIO_MMIO_INT_CONFIG != 0;
            }
            VIRTIO_MMIO_STATUS => self.write_status(value),
            VIRTIO_MMIO_SHM_SEL => self.shm_select = value,
            // Read-only and unknown registers ignore writes.
            _ => {}
        }
    }

    /// No interrupts reach this guest, but the register stays honest: a device that
    /// needs a reset reports a configuration change until the driver acknowledges it.
    fn interrupt_status(&self) -> u32 {
        if self.needs_reset.is_raised() && !self.config_interrupt_acked {
            VIRTIO_MMIO_INT_CONFIG
        } else {
            0
        }
    }

    fn queue_notify(&mut self, value: u32) {
        if !self.is_activated() || self.needs_reset.is_raised() {
            return;
        }
        if let Ok(index) = u16::try_from(value) {
            if usize::from(index) < self.queues.len() {
                self.device.queue_notify(index);
            }
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        // Features are only negotiable between DRIVER and FEATURES_OK.
        let core = self.status & !VIRTIO_CONFIG_S_FAILED;
        if core != VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER {
            return;
        }
        let value = u64::from(value);
        match self.driver_features_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (value << 32),
            _ => {}
        }
    }

    fn write_queue_register(&mut self, offset: u32, value: u32) {
        // Queue layout is frozen once the device runs or the queue is ready.
        if self.is_activated() || self.needs_reset.is_raised() {
            return;
        }
        let Some(queue) = self.queues.get_mut(self.queue_select as usize) else {
            return;
        };
        if offset == VIRTIO_MMIO_QUEUE_READY {
            queue.ready = value == 1;
            return;
        }
        if queue.ready {
            return;
        }
        let set_low = |reg: &mut u64| *reg = (*reg & !0xffff_ffff) | u64::from(value);
        let set_high = |reg: &mut u64| *reg = (*reg & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            VIRTIO_MMIO_QUEUE_NUM => {
                // A size the device cannot honour would make the driver and the device
                // disagree about the ring layout: refuse to run at all.
                let valid = u16::try_from(value)
                    .ok()
                    .filter(|s| s.is_power_of_two() && *s <= queue.max_size);
                match valid {
                    Some(size) => queue.size = size,
                    None => self.needs_reset.raise(),
                }
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW => set_low(&mut queue.desc),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => set_high(&mut queue.desc),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => set_low(&mut queue.avail),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => set_high(&mut queue.avail),
            VIRTIO_MMIO_QUEUE_USED_LOW => set_low(&mut queue.used),
            VIRTIO_MMIO_QUEUE_USED_HIGH => set_high(&mut queue.used),
            _ => {}
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        if self.needs_reset.is_raised() {
            return;
        }
        if value & VIRTIO_CONFIG_S_FAILED != 0 {
            // The driver gave up on the device; it must reset before trying again.
            self.status |= VIRTIO_CONFIG_S_FAILED;
            return;
        }
        let target = value & !VIRTIO_CONFIG_S_NEEDS_RESET;
        let old = self.status & !VIRTIO_CONFIG_S_FAILED;
        const STEPS: [u32; 4] = [
            VIRTIO_CONFIG_S_ACKNOWLEDGE,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        ];
        // Bits are only ever added, in the order of the initialisation sequence
        // (virtio 1.2, 3.1.1); anything else (DRIVER_OK before FEATURES_OK, clearing a
        // bit) leaves the device unusable until reset.
        if target & old != old || !STEPS.contains(&target) {
            self.needs_reset.raise();
            return;
        }
        if target & VIRTIO_CONFIG_S_FEATURES_OK != 0 && old & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            if !self.features_acceptable() {
                // Leaving FEATURES_OK clear is how a device refuses features (3.1.1).
                self.status = old;
                return;
            }
            self.status = STEPS[2];
        }
        if target & VIRTIO_CONFIG_S_DRIVER_OK != 0 && old & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            if self.activate() {
                self.status = STEPS[3];
            } else {
                self.needs_reset.raise();
            }
            return;
        }
        self.status = target;
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device.features();
        self.driver_features & !offered == 0
            && self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0
    }

    /// Builds the queues from the registers and hands them to the device; false when
    /// a queue is unusable (not ready, misaligned, outside memory) or the device fails.
    fn activate(&mut self) -> bool {
        let event_idx = self.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for regs in &self.queues {
            let Some(queue) = build_queue(regs, event_idx, &self.mem) else {
                return false;
            };
            queues.push(queue);
        }
        let mut kicks = Vec::with_capacity(self.kicks.len());
        for kick in &self.kicks {
            match kick.try_clone() {
                Ok(k) => kicks.push(k),
                Err(_) => return false,
            }
        }
        let interrupt = match &self.interrupt {
            Some(event) => match event.try_clone() {
                Ok(e) => Interrupt::new(Some(e)),
                Err(_) => return false,
            },
            None => Interrupt::new(None),
        };
        self.device
            .activate(Activation {
                mem: self.mem.clone(),
                queues,
                kicks,
                acked_features: self.driver_features,
                needs_reset: self.needs_reset.clone(),
                interrupt,
            })
            .is_ok()
    }

    /// Stops the device for good at the end of a run (its thread joined), as a driver's
    /// reset would.
    pub fn stop(&mut self) {
        self.reset();
    }

    /// Status 0: stop the device and forget everything the driver set up.
    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            *q = QueueRegs {
                max_size: q.max_size,
                size: q.max_size,
                ..QueueRegs::default()
            };
        }
        self.queue_select = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.config_interrupt_acked = false;
        self.shm_select = 0;
        self.needs_reset.clear();
    }
}

/// A `Queue` for the device, or None if the driver's settings are unusable.
fn build_queue(regs: &QueueRegs, event_idx: bool, mem: &GuestMemory) -> Option<Queue> {
    if !regs.ready || regs.desc == 0 || regs.avail == 0 || regs.used == 0 {
        return None;
    }
    let mut queue = Queue::new(regs.max_size).ok()?;
    queue.try_set_size(regs.size).ok()?;
    queue
        .try_set_desc_table_address(GuestAddress(regs.desc))
        .ok()?;
    queue
        .try_set_avail_ring_address(GuestAddress(regs.avail))
        .ok()?;
    queue
        .try_set_used_ring_address(GuestAddress(regs.used))
        .ok()?;
    queue.set_event_idx(event_idx);
    queue.set_ready(true);
    queue.is_valid(mem).then_some(queue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::virtio::ActivateError;

    /// A device with two queues that records what the transport does to it.
    #[derive(Default)]
    struct Fake {
        activations: usize,
        resets: usize,
        notified: Vec<u16>,
        acked: u64,
        event_idx: Vec<bool>,
        interrupt: Option<bool>,
    }

    const OFFERED: u64 = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX) | 0b101;

    impl VirtioDevice for Fake {
        fn device_type(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            OFFERED
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (offset as u8).wrapping_add(i as u8);
            }
        }
        fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
        fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
            self.activations += 1;
            self.acked = a.acked_features;
            self.event_idx = a.queues.iter().map(|q| q.event_idx_enabled()).collect();
            assert_eq!(a.kicks.len(), 2);
            self.interrupt = Some(a.interrupt.is_connected());
            Ok(())
        }
        fn queue_notify(&mut self, queue: u16) {
            self.notified.push(queue);
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    fn transport() -> MmioTransport<Fake> {
        MmioTransport::new(Fake::default(), memory()).unwrap()
    }

    const ACK_DRIVER: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    const FEAT_OK: u32 = ACK_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

    fn negotiate(t: &mut MmioTransport<Fake>, features: u64) -> u32 {
        write_reg(t, VIRTIO_MMIO_STATUS, 0);
        write_reg(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        write_reg(t, VIRTIO_MMIO_STATUS, ACK_DRIVER);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
        write_reg(t, VIRTIO_MMIO_STATUS, FEAT_OK);
        read_reg(t, VIRTIO_MMIO_STATUS)
    }

    /// Both queues in memory, second one after the first.
    fn setup_queues(t: &mut MmioTransport<Fake>) {
        for (sel, base) in [(0u32, DESC), (1, DATA)] {
            write_reg(t, VIRTIO_MMIO_QUEUE_SEL, sel);
            write_reg(t, VIRTIO_MMIO_QUEUE_NUM, 8);
            write_reg(t, VIRTIO_MMIO_QUEUE_DESC_LOW, base as u32);
            write_reg(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (base + 0x1000) as u32);
            write_reg(t, VIRTIO_MMIO_QUEUE_USED_LOW, (base + 0x2000) as u32);
            write_reg(t, VIRTIO_MMIO_QUEUE_READY, 1);
        }
    }

    #[test]
    fn identity_registers() {
        let mut t = transport();
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_DEVICE_ID), 42);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_VENDOR_ID), VENDOR_ID);
        write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES),
            OFFERED as u32
        );
        write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES),
            (OFFERED >> 32) as u32
        );
        write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 0);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 8);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, 2);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_SHM_LEN_LOW), u32::MAX);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_CONFIG_GENERATION), 0);
        let mut cfg = [0u8; 3];
        t.read(0x105, &mut cfg);
        assert_eq!(cfg, [5, 6, 7]);
    }

    #[test]
    fn odd_accesses_read_zero_and_never_panic() {
        let mut t = transport();
        let mut b = [0xffu8; 2];
        t.read(0, &mut b);
        assert_eq!(b, [0, 0]);
        let mut b = [0xffu8; 4];
        t.read(1, &mut b);
        assert_eq!(b, [0; 4]);
        // Every offset and length a guest can produce below the config space, reads
        // and writes (writes of junk included).
        for offset in (0..0x100u64).chain([0xfff, u64::MAX - 1, u64::MAX]) {
            for len in 0..=8 {
                let mut buf = vec![0xa5u8; len];
                t.read(offset, &mut buf);
                t.write(offset, &buf);
            }
        }
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    }

    #[test]
    fn full_initialisation_activates_with_event_idx() {
        let mut t = transport();
        let features = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX);
        assert_eq!(negotiate(&mut t, features), FEAT_OK);
        setup_queues(&mut t);
        write_reg(
            &mut t,
            VIRTIO_MMIO_STATUS,
            FEAT_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert!(t.is_activated());
        assert_eq!(t.device().activations, 1);
        assert_eq!(t.device().acked, features);
        assert_eq!(t.device().event_idx, [true, true]);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 7);
        assert_eq!(t.device().notified, [1]);
        // Queue layout is frozen while running.
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8000);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW), DESC as u32);
        // Status 0 resets the device and the registers.
        let resets = t.device().resets;
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(t.device().resets, resets + 1);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_STATUS), 0);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM), 16);
    }

    #[test]
    fn the_interrupt_eventfd_reaches_the_device_at_activation() {
        let mut t = transport();
        negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
        setup_queues(&mut t);
        write_reg(
            &mut t,
            VIRTIO_MMIO_STATUS,
            FEAT_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert_eq!(t.device().interrupt, Some(false));
        t.set_interrupt(EventFd::new(EFD_NONBLOCK).unwrap());
        negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
        setup_queues(&mut t);
        write_reg(
            &mut t,
            VIRTIO_MMIO_STATUS,
            FEAT_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert_eq!(t.device().activations, 2);
        assert_eq!(t.device().interrupt, Some(true));
    }

    #[test]
    fn features_not_offered_or_without_version_1_keep_features_ok_clear() {
        let mut t = transport();
        assert_eq!(
            negotiate(&mut t, (1 << VIRTIO_F_VERSION_1) | (1 << 1)),
            ACK_DRIVER
        );
        assert_eq!(negotiate(&mut t, 1), ACK_DRIVER);
        assert_eq!(negotiate(&mut t, 1 << VIRTIO_F_VERSION_1), FEAT_OK);
        // Feature writes after FEATURES_OK are ignored.
        write_reg(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        write_reg(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, 0xffff_ffff);
        setup_queues(&mut t);
        write_reg(
            &mut t,
            VIRTIO_MMIO_STATUS,
            FEAT_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert_eq!(t.device().acked, 1 << VIRTIO_F_VERSION_1);
        assert_eq!(t.device().event_idx, [false, false]);
    }

    #[test]
    fn driver_ok_before_features_ok_needs_reset() {
        let mut t = transport();
        write_reg(&mut t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, ACK_DRIVER);
        setup_queues(&mut t);
        write_reg(
            &mut t,
            VIRTIO_MMIO_STATUS,
            ACK_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_STATUS),
            ACK_DRIVER | VIRTIO_CONFIG_S_NEEDS_RESET
        );
        assert_eq!(t.device().activations, 0);
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
            VIRTIO_MMIO_INT_CONFIG
        );
        write_reg(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        // Nothing but a reset is accepted now.
        write_reg(&mut t, VIRTIO_MMIO_STATUS, FEAT_OK);
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_STATUS),
            ACK_DRIVER | VIRTIO_CONFIG_S_NEEDS_RESET
        );
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_STATUS), 0);
    }

    #[test]
    fn clearing_status_bits_needs_reset_and_failed_sticks() {
        let mut t = transport();
        write_reg(&mut t, VIRTIO_MMIO_STATUS, ACK_DRIVER);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        assert_ne!(
            read_reg(&mut t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
            0
        );
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 0);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_FAILED);
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_STATUS),
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_FAILED
        );
    }

    #[test]
    fn bad_queue_sizes_need_reset() {
        for size in [0u32, 3, 12, 32, 0x1_0010] {
            let mut t = transport();
            negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
            write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
            write_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM, size);
            assert_ne!(
                read_reg(&mut t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
                0,
                "size {size}"
            );
            setup_queues(&mut t);
            write_reg(
                &mut t,
                VIRTIO_MMIO_STATUS,
                FEAT_OK | VIRTIO_CONFIG_S_DRIVER_OK,
            );
            assert_eq!(t.device().activations, 0);
        }
        // A good smaller size sticks.
        let mut t = transport();
        negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM, 4);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM), 4);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_STATUS), FEAT_OK);
    }

    #[test]
    fn queue_not_ready_refuses_driver_ok() {
        let mut t = transport();
        negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
        setup_queues(&mut t);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_READY, 0);
        write_reg(
            &mut t,
            VIRTIO_MMIO_STATUS,
            FEAT_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_STATUS),
            FEAT_OK | VIRTIO_CONFIG_S_NEEDS_RESET
        );
        assert_eq!(t.device().activations, 0);
    }
}
