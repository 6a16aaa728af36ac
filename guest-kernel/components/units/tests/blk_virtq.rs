//! The driver's virtqueue and extent lists, against a device played by a host thread
//! (addresses are host addresses here, as they are guest-physical ones in a guest).

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use flexos_blkdev::extents::{self, Extent};
use flexos_blkdev::request::{E_LENGTH, E_RANGE};
use flexos_blkdev::virtq::*;
use flexos_virtio::{DeviceView, SplitQueue};

/// A queue as the driver sets it up (EVENT_IDX negotiated).
fn virtq() -> Virtq {
    Virtq::new(SplitQueue::new(QUEUE_SIZE, true).unwrap())
}

/// Reads `len` bytes at host address `addr`.
fn peek(addr: u64, len: usize) -> Vec<u8> {
    // SAFETY: the tests only put addresses of live buffers into descriptors.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
}

/// A device: answers every chain on the available ring against `disk` (512-byte
/// sectors), as the monitor's virtio-blk does; `sleeping` makes it publish avail_event
/// after each round (what the monitor's device does before it sleeps).
fn device(
    r: DeviceView,
    disk: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    kicks: Option<Arc<AtomicU16>>,
) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        let (mut next, mut kinds) = (0u16, Vec::new());
        while !stop.load(Ordering::Acquire) {
            // A sleeping device (`kicks` given) takes a request only once a kick has
            // covered it: the test's kick stores the available index it published.
            let kicked = kicks
                .as_ref()
                .is_none_or(|k| k.load(Ordering::Acquire) != next);
            if r.avail_idx() == next || !kicked {
                std::hint::spin_loop();
                continue;
            }
            let head = r.avail_head(next);
            let mut descs = vec![r.desc(head)];
            while descs.last().unwrap().2 & 1 != 0 {
                descs.push(r.desc(descs.last().unwrap().3));
            }
            let hdr = peek(descs[0].0, 16);
            let kind = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
            let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap());
            kinds.push(kind);
            let mut at = sector as usize * 512;
            let mut disk = disk.lock().unwrap();
            for &(addr, len, flags, _) in &descs[1..descs.len() - 1] {
                let len = len as usize;
                if flags & 2 != 0 {
                    // SAFETY: a live buffer the driver gave the device to fill.
                    unsafe {
                        std::ptr::copy_nonoverlapping(disk[at..].as_ptr(), addr as *mut u8, len)
                    };
                } else {
                    disk[at..at + len].copy_from_slice(&peek(addr, len));
                }
                at += len;
            }
            let status = descs.last().unwrap().0 as *mut u8;
            // SAFETY: the status byte of a request in flight.
            unsafe { status.write_volatile(0) };
            next = next.wrapping_add(1);
            // A device about to sleep publishes avail_event before the used entry that
            // lets the driver post again (so the driver cannot miss it).
            if kicks.is_some() {
                r.set_avail_event(next);
            }
            r.push_used(next.wrapping_sub(1), head.into(), 1);
        }
        kinds
    })
}

fn wait(q: &Virtq) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !q.done() {
        assert!(std::time::Instant::now() < give_up, "device never answered");
        std::hint::spin_loop();
    }
}

#[test]
fn a_batch_of_writes_and_a_read_is_answered_in_one_round() {
    let mut q = virtq();
    let disk = Arc::new(Mutex::new(vec![0u8; 64 * 512]));
    let stop = Arc::new(AtomicBool::new(false));
    let dev = device(q.queue().device_view(), disk.clone(), stop.clone(), None);

    let a = vec![0xaau8; 1024];
    let b = vec![0xbbu8; 512];
    let seg = |v: &Vec<u8>, w| Segment {
        addr: v.as_ptr() as u64,
        len: v.len() as u32,
        device_writes: w,
    };
    let (sa, sb) = ([seg(&a, false)], [seg(&b, false)]);
    let writes = [
        Request {
            kind: 1,
            sector: 4,
            data: &sa,
        },
        Request {
            kind: 1,
            sector: 10,
            data: &sb,
        },
    ];
    // The device has never slept: avail_event is 0, so the first batch kicks.
    assert_eq!(q.post(&writes), Ok(true));
    assert_eq!(q.post(&writes), Err(PostError::Busy));
    wait(&q);
    let mut st = [9u8; 2];
    q.finish(&mut st);
    assert_eq!(st, [0, 0]);
    assert_eq!(&disk.lock().unwrap()[4 * 512..6 * 512], &a[..]);
    assert_eq!(&disk.lock().unwrap()[10 * 512..11 * 512], &b[..]);

    // A read of both, in two segments of one request; then a flush. The device is
    // still polling (avail_event not moved past us): no kick.
    let mut back = vec![0u8; 1536];
    let (lo, hi) = back.split_at_mut(1024);
    let segs = [
        Segment {
            addr: lo.as_mut_ptr() as u64,
            len: 1024,
            device_writes: true,
        },
        Segment {
            addr: hi.as_mut_ptr() as u64,
            len: 512,
            device_writes: true,
        },
    ];
    let reqs = [
        Request {
            kind: 0,
            sector: 4,
            data: &segs,
        },
        Request {
            kind: 4,
            sector: 0,
            data: &[],
        },
    ];
    assert_eq!(q.post(&reqs), Ok(false));
    wait(&q);
    q.finish(&mut st);
    assert_eq!(st, [0, 0]);
    assert_eq!(&back[..1024], &a[..]);
    assert_eq!(
        &back[1024..],
        &[0u8; 512][..],
        "sectors 6..7 were never written"
    );
    stop.store(true, Ordering::Release);
    assert_eq!(dev.join().unwrap(), vec![1, 1, 0, 4]);
}

#[test]
fn a_device_that_went_to_sleep_is_kicked_once_per_batch() {
    let mut q = virtq();
    let disk = Arc::new(Mutex::new(vec![0u8; 8 * 512]));
    let stop = Arc::new(AtomicBool::new(false));
    let kicks = Arc::new(AtomicU16::new(0));
    let dev = device(
        q.queue().device_view(),
        disk,
        stop.clone(),
        Some(kicks.clone()),
    );
    let buf = vec![1u8; 512];
    let seg = [Segment {
        addr: buf.as_ptr() as u64,
        len: 512,
        device_writes: false,
    }];
    let mut st = [0u8; 3];
    // Far more batches than the ring has slots: indices wrap.
    for round in 0..200 {
        let reqs = [Request {
            kind: 1,
            sector: 1,
            data: &seg,
        }; 3];
        assert_eq!(q.post(&reqs), Ok(true), "round {round}");
        // The kick: the device wakes and takes the batch (3 requests a round).
        kicks.store((3 * (round + 1)) as u16, Ordering::Release);
        wait(&q);
        q.finish(&mut st);
        assert_eq!(st, [0; 3]);
    }
    stop.store(true, Ordering::Release);
    assert_eq!(dev.join().unwrap().len(), 600);
}

#[test]
fn batches_the_queue_cannot_hold_are_refused() {
    let mut q = virtq();
    assert_eq!(q.post(&[]), Err(PostError::TooBig));
    let seg = [Segment {
        addr: 0x1000,
        len: 512,
        device_writes: false,
    }];
    let many = vec![
        Request {
            kind: 1,
            sector: 0,
            data: &seg
        };
        MAX_BATCH + 1
    ];
    assert_eq!(q.post(&many), Err(PostError::TooBig));
    let segs = vec![seg[0]; usize::from(QUEUE_SIZE)];
    assert_eq!(
        q.post(&[Request {
            kind: 1,
            sector: 0,
            data: &segs
        }]),
        Err(PostError::TooBig)
    );
}

#[test]
fn need_event_is_virtio_s_vring_need_event() {
    // The device asked for a kick at index 5: moving 4 -> 6 passes it, 5 -> 6 passes it
    // (it is the entry the device waits for), 6 -> 7 does not.
    assert!(need_event(5, 6, 4));
    assert!(need_event(5, 6, 5));
    assert!(!need_event(5, 7, 6));
    assert!(!need_event(4, 5, 5));
    // Across the wrap of the 16-bit index.
    assert!(need_event(0xffff, 1, 0xfffe));
    assert!(!need_event(0xfffd, 1, 0xfffe));
}

#[test]
fn extents_round_trip_merge_and_check() {
    let e = Extent {
        sector: 1 << 33,
        offset: 4096,
        len: 8192,
    };
    assert_eq!(Extent::decode(&e.encode()), e);
    let mut list = Vec::new();
    extents::push(&mut list, 16, 0, 4096).unwrap();
    extents::push(&mut list, 24, 4096, 4096).unwrap(); // continues on disk and in the buffer
    extents::push(&mut list, 56, 8192, 4096).unwrap(); // a gap on the disk
    extents::push(&mut list, 64, 16384, 512).unwrap(); // a gap in the buffer
    assert_eq!(
        list,
        vec![
            Extent {
                sector: 16,
                offset: 0,
                len: 8192
            },
            Extent {
                sector: 56,
                offset: 8192,
                len: 4096
            },
            Extent {
                sector: 64,
                offset: 16384,
                len: 512
            },
        ]
    );
    assert_eq!(extents::push(&mut list, 0, 0, 100), Err(E_LENGTH));
    // On a 100-sector disk with a 64 KiB data buffer.
    let ok = Extent {
        sector: 92,
        offset: 60 * 1024,
        len: 4096,
    };
    assert_eq!(ok.check(100, 64 * 1024), Ok(()));
    assert_eq!(
        Extent { sector: 93, ..ok }.check(100, 64 * 1024),
        Err(E_RANGE)
    );
    assert_eq!(
        Extent {
            offset: 61 * 1024,
            ..ok
        }
        .check(100, 64 * 1024),
        Err(E_RANGE)
    );
    assert_eq!(Extent { len: 0, ..ok }.check(100, 64 * 1024), Err(E_LENGTH));
    assert_eq!(
        Extent {
            offset: u32::MAX,
            ..ok
        }
        .check(100, u32::MAX as usize),
        Err(E_RANGE)
    );
}
