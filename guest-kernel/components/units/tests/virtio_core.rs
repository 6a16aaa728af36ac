//! The guest's virtio core (flexos-virtio): the device handshake against a model of a
//! virtio-mmio device's registers, and the split queue's indices, flags and event words
//! as a device sees them. (blk_virtq.rs runs requests through it against a device
//! thread; the end-to-end tests run both drivers against the monitor's devices.)

use std::cell::{Cell, RefCell};

use flexos_virtio::mmio::*;
use flexos_virtio::queue::{DESC_F_NEXT, DESC_F_WRITE, MAX_SIZE};
use flexos_virtio::{Device, SplitQueue, StartError};

const F_A: u64 = 1 << 5;
const F_B: u64 = 1 << 7;
const F_C: u64 = 1 << 9;

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct QueueRegs {
    num_max: u32,
    num: u32,
    ready: u32,
    desc: u64,
    driver: u64,
    device: u64,
}

/// The registers of a virtio-mmio device, as the monitor's transport behaves.
struct Model {
    magic: u32,
    version: u32,
    id: u32,
    offered: u64,
    /// The device clears FEATURES_OK when it does not like the features.
    refuse: bool,
    /// The device sets FAILED when the driver says DRIVER_OK.
    fail_when_ready: bool,
    device_sel: Cell<u32>,
    driver_sel: Cell<u32>,
    driver_features: Cell<u64>,
    status: Cell<u32>,
    status_writes: RefCell<Vec<u32>>,
    queue_sel: Cell<u32>,
    queues: RefCell<Vec<QueueRegs>>,
    notified: RefCell<Vec<u32>>,
    config: [u8; 16],
    /// Config generation reads so far; it changes once, between the 1st and 2nd read
    /// of a field (a torn read the driver must retry).
    generation_reads: Cell<u32>,
}

impl Model {
    fn new(id: u32, offered: u64, queue_max: &[u32]) -> Model {
        Model {
            magic: MAGIC,
            version: 2,
            id,
            offered,
            refuse: false,
            fail_when_ready: false,
            device_sel: Cell::new(0),
            driver_sel: Cell::new(0),
            driver_features: Cell::new(0),
            status: Cell::new(0),
            status_writes: RefCell::new(Vec::new()),
            queue_sel: Cell::new(0),
            queues: RefCell::new(
                queue_max
                    .iter()
                    .map(|&num_max| QueueRegs {
                        num_max,
                        ..QueueRegs::default()
                    })
                    .collect(),
            ),
            notified: RefCell::new(Vec::new()),
            config: [
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
            ],
            generation_reads: Cell::new(0),
        }
    }

    fn with_queue<R>(&self, f: impl FnOnce(&mut QueueRegs) -> R) -> Option<R> {
        let sel = self.queue_sel.get() as usize;
        self.queues.borrow_mut().get_mut(sel).map(f)
    }
}

fn set_half(word: u64, half: u32, value: u32) -> u64 {
    let shift = 32 * half;
    (word & !(0xffff_ffffu64 << shift)) | u64::from(value) << shift
}

impl Transport for Model {
    fn read(&self, offset: usize) -> u32 {
        match offset {
            MAGIC_VALUE => self.magic,
            VERSION => self.version,
            DEVICE_ID => self.id,
            DEVICE_FEATURES => (self.offered >> (32 * self.device_sel.get())) as u32,
            QUEUE_NUM_MAX => self.with_queue(|q| q.num_max).unwrap_or(0),
            QUEUE_READY => self.with_queue(|q| q.ready).unwrap_or(0),
            STATUS => self.status.get(),
            CONFIG_GENERATION => {
                let n = self.generation_reads.get();
                self.generation_reads.set(n + 1);
                u32::from(n >= 1)
            }
            o if o >= CONFIG => {
                let at = o - CONFIG;
                u32::from_le_bytes(self.config[at..at + 4].try_into().unwrap())
            }
            _ => panic!("read of register {offset:#x}"),
        }
    }

    fn write(&self, offset: usize, value: u32) {
        match offset {
            DEVICE_FEATURES_SEL => self.device_sel.set(value),
            DRIVER_FEATURES_SEL => self.driver_sel.set(value),
            DRIVER_FEATURES => {
                let sel = self.driver_sel.get();
                self.driver_features
                    .set(set_half(self.driver_features.get(), sel, value));
            }
            STATUS => {
                self.status_writes.borrow_mut().push(value);
                let mut v = value;
                if v & STATUS_FEATURES_OK != 0
                    && (self.refuse || self.driver_features.get() & !self.offered != 0)
                {
                    v &= !STATUS_FEATURES_OK;
                }
                if v & STATUS_DRIVER_OK != 0 && self.fail_when_ready {
                    v |= STATUS_NEEDS_RESET;
                }
                self.status.set(v);
            }
            QUEUE_SEL => self.queue_sel.set(value),
            QUEUE_NUM => {
                self.with_queue(|q| q.num = value);
            }
            QUEUE_READY => {
                self.with_queue(|q| q.ready = value);
            }
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH => {
                self.with_queue(|q| {
                    q.desc = set_half(q.desc, (offset == QUEUE_DESC_HIGH).into(), value)
                });
            }
            QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH => {
                self.with_queue(|q| {
                    q.driver = set_half(q.driver, (offset == QUEUE_DRIVER_HIGH).into(), value)
                });
            }
            QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => {
                self.with_queue(|q| {
                    q.device = set_half(q.device, (offset == QUEUE_DEVICE_HIGH).into(), value)
                });
            }
            QUEUE_NOTIFY => self.notified.borrow_mut().push(value),
            _ => panic!("write of register {offset:#x}"),
        }
    }

    fn config_u8(&self, i: usize) -> u8 {
        self.config[i]
    }
}

const ACK: u32 = STATUS_ACKNOWLEDGE;
const DRV: u32 = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
const FOK: u32 = DRV | STATUS_FEATURES_OK;

#[test]
fn the_handshake_negotiates_sets_queues_up_and_goes_ready() {
    let offered = F_VERSION_1 | F_RING_EVENT_IDX | F_A | F_C;
    let mut dev = Device::probe(Model::new(2, offered, &[128, 1024]), 2).unwrap();
    let features = dev.negotiate(F_A, F_RING_EVENT_IDX | F_B).unwrap();
    assert_eq!(
        features,
        F_VERSION_1 | F_A | F_RING_EVENT_IDX,
        "C not asked for, B not offered"
    );
    assert_eq!(dev.features(), features);
    assert!(dev.has(F_A) && dev.has(F_RING_EVENT_IDX) && !dev.has(F_C));
    let m = dev.transport();
    assert_eq!(m.driver_features.get(), features);
    assert_eq!(*m.status_writes.borrow(), [0, ACK, DRV, FOK], "reset first");

    // Queue 0 allows 128 (the driver takes all of it); queue 1 allows 1024, more than
    // the driver ever sets up.
    let q0 = dev.queue(0, 1, MAX_SIZE).unwrap();
    let q1 = dev.queue(1, 64, MAX_SIZE).unwrap();
    assert_eq!((q0.size(), q1.size()), (128, 256));
    for (q, regs) in [q0, q1].iter().zip(dev.transport().queues.borrow().iter()) {
        let (desc, driver, device) = q.addresses();
        assert_eq!(
            *regs,
            QueueRegs {
                num_max: regs.num_max,
                num: u32::from(q.size()),
                ready: 1,
                desc,
                driver,
                device,
            }
        );
        assert_eq!(desc % 4096, 0, "page-aligned");
        assert_eq!((driver - desc, device - desc), (4096, 8192));
    }

    dev.driver_ok().unwrap();
    assert_eq!(dev.transport().status.get(), FOK | STATUS_DRIVER_OK);
    assert!(!dev.broken());
    dev.notify(1);
    assert_eq!(*dev.transport().notified.borrow(), [1]);
    assert_eq!(dev.config_u8(1), 0x22);
}

#[test]
fn a_device_without_the_required_features_is_failed() {
    let mut dev = Device::probe(Model::new(1, F_VERSION_1 | F_A, &[256]), 1).unwrap();
    assert_eq!(
        dev.negotiate(F_A | F_B, 0),
        Err(StartError::MissingFeatures {
            offered: F_VERSION_1 | F_A,
            missing: F_B,
        })
    );
    assert_eq!(dev.transport().status.get(), DRV | STATUS_FAILED);
    assert_eq!(
        dev.transport().driver_features.get(),
        0,
        "nothing was accepted"
    );

    // VERSION_1 is always required: this driver speaks modern virtio only.
    let mut legacy = Device::probe(Model::new(1, F_A, &[256]), 1).unwrap();
    assert_eq!(
        legacy.negotiate(0, F_A),
        Err(StartError::MissingFeatures {
            offered: F_A,
            missing: F_VERSION_1,
        })
    );
    assert!(
        StartError::MissingFeatures {
            offered: F_A,
            missing: F_VERSION_1
        }
        .to_string()
        .contains("lacks features 0x100000000")
    );
}

#[test]
fn features_the_device_refuses_fail_it() {
    let mut model = Model::new(1, F_VERSION_1, &[256]);
    model.refuse = true;
    let mut dev = Device::probe(model, 1).unwrap();
    assert_eq!(dev.negotiate(0, 0), Err(StartError::FeaturesRefused));
    assert_eq!(dev.transport().status.get() & STATUS_FAILED, STATUS_FAILED);
}

#[test]
fn queue_setup_checks_what_the_device_allows() {
    let mut dev = Device::probe(Model::new(2, F_VERSION_1, &[0, 32, 100, 256]), 2).unwrap();
    dev.negotiate(0, 0).unwrap();
    assert_eq!(dev.queue(0, 1, 64).err(), Some(StartError::NoQueue(0)));
    assert_eq!(
        dev.queue(1, 64, 64).err(),
        Some(StartError::QueueTooSmall {
            queue: 1,
            max: 32,
            need: 64
        })
    );
    // The largest power of two within both limits.
    assert_eq!(dev.queue(2, 1, 256).unwrap().size(), 64);
    assert_eq!(dev.queue(3, 1, 200).unwrap().size(), 128);
    // Queue 3 is now ready: setting it up again is refused.
    assert_eq!(dev.queue(3, 1, 64).err(), Some(StartError::QueueInUse(3)));
    assert_eq!(dev.queue(9, 1, 64).err(), Some(StartError::NoQueue(9)));
    assert_ne!(dev.transport().status.get() & STATUS_FAILED, 0);
}

#[test]
fn probing_checks_magic_version_and_id() {
    let mut bad = Model::new(1, F_VERSION_1, &[]);
    bad.magic = 0x1234;
    assert_eq!(Device::probe(bad, 1).err(), Some(StartError::NotVirtio));
    let mut legacy = Model::new(1, F_VERSION_1, &[]);
    legacy.version = 1;
    assert_eq!(Device::probe(legacy, 1).err(), Some(StartError::NotVirtio));
    assert_eq!(
        Device::probe(Model::new(2, F_VERSION_1, &[]), 1).err(),
        Some(StartError::WrongDevice(2))
    );
}

#[test]
fn a_device_that_fails_when_ready_is_reported() {
    let mut model = Model::new(1, F_VERSION_1, &[256]);
    model.fail_when_ready = true;
    let mut dev = Device::probe(model, 1).unwrap();
    dev.negotiate(0, 0).unwrap();
    assert_eq!(dev.driver_ok(), Err(StartError::DeviceFailed));
    assert!(dev.broken());
}

#[test]
fn a_torn_config_read_is_retried() {
    let dev = Device::probe(Model::new(2, F_VERSION_1, &[]), 2).unwrap();
    // Generation 0 before, 1 after the first read: read again (1 and 1).
    assert_eq!(dev.config_u64(8), 0x0807_0605_0403_0201);
    assert_eq!(dev.transport().generation_reads.get(), 4);
}

#[test]
fn with_event_idx_kicks_follow_avail_event_and_used_event_starts_disarmed() {
    let mut q = SplitQueue::new(8, true).unwrap();
    let d = q.device_view();
    assert_eq!(d.avail_flags(), 0, "flags must stay 0 with EVENT_IDX");
    assert_eq!(d.used_event(), 0x8000, "no notifications until armed");
    // A device that never slept has avail_event 0: the first publication kicks.
    q.set_desc(0, 0x1000, 512, true, None);
    q.push(0);
    assert!(q.publish());
    assert_eq!((d.avail_idx(), d.avail_head(0)), (1, 0));
    assert_eq!(d.desc(0), (0x1000, 512, DESC_F_WRITE, 0));
    // The device polls (avail_event stays behind): no more kicks.
    for i in 1..6u16 {
        q.push(i);
        assert!(!q.publish(), "entry {i}");
    }
    // It goes to sleep wanting a kick once entry 7 is available: 6 -> 7 kicks.
    d.set_avail_event(6);
    q.push(6);
    assert!(q.publish());
    assert!(!q.publish(), "nothing new");
    // Used entries come back in order; arming asks for the next one.
    assert!(!q.has_used() && !q.all_used());
    assert_eq!(q.outstanding(), 7);
    d.push_used(0, 0, 100);
    d.push_used(1, 5, 200);
    assert_eq!(q.pop_used(), Some((0, 100)));
    assert!(q.arm(), "an entry is already waiting: do not sleep");
    assert_eq!(d.used_event(), 1);
    assert_eq!(q.pop_used(), Some((5, 200)));
    assert_eq!(q.pop_used(), None);
    assert!(!q.arm());
    assert_eq!(d.used_event(), 2);
    q.disarm();
    assert_eq!(d.used_event(), 2u16.wrapping_sub(0x8000));
    assert_eq!(q.outstanding(), 5);
}

#[test]
fn without_event_idx_the_device_flags_decide() {
    let mut q = SplitQueue::new(4, false).unwrap();
    let d = q.device_view();
    assert_eq!(d.avail_flags(), 1, "never interrupt a polling driver");
    q.push(0);
    assert!(q.publish());
    d.set_used_flags(1);
    q.push(1);
    assert!(!q.publish(), "the device said NO_NOTIFY");
    d.set_used_flags(0);
    assert!(!q.publish(), "nothing new");
    q.push(2);
    assert!(q.publish());
}

#[test]
fn chains_link_descriptors_and_indices_wrap() {
    let mut q = SplitQueue::new(4, true).unwrap();
    let d = q.device_view();
    q.set_desc(0, 0xa000, 16, false, Some(1));
    q.set_desc(1, 0xb000, 4096, true, Some(3));
    q.set_desc(3, 0xc000, 1, true, None);
    assert_eq!(d.desc(0), (0xa000, 16, DESC_F_NEXT, 1));
    assert_eq!(d.desc(1), (0xb000, 4096, DESC_F_NEXT | DESC_F_WRITE, 3));
    assert_eq!(d.desc(3), (0xc000, 1, DESC_F_WRITE, 0));
    q.set_len(1, 512);
    assert_eq!(d.desc(1).1, 512);
    // Many more entries than slots: the 16-bit indices and the slots wrap.
    for i in 0..70_000u32 {
        let i16 = i as u16;
        q.push(i16 % 4);
        q.publish();
        assert_eq!(d.avail_head(i16), i16 % 4);
        d.push_used(i16, i % 4, i);
        assert!(q.all_used());
        assert_eq!(q.pop_used(), Some((i % 4, i)));
    }
    assert_eq!(q.outstanding(), 0);
}

#[test]
#[should_panic(expected = "bad queue size")]
fn a_queue_size_that_is_no_power_of_two_is_a_driver_bug() {
    let _ = SplitQueue::new(48, true);
}
