//! virtio-blk under a guest that controls every byte of its memory: the descriptor
//! table, both rings, headers and buffers, the queue size and ring addresses. The
//! transport and the request parser must never panic; every access to guest memory
//! goes through vm-memory's bounds checks.

#![no_main]

use devices::block::{Block, Execution};
use devices::virtio::mmio::MmioTransport;
use libfuzzer_sys::fuzz_target;
use virtio_bindings::bindings::virtio_blk::VIRTIO_BLK_F_FLUSH;
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

mod disk;

const BASE: u64 = 0x1_0000;
const SIZE: usize = 0x1_0000;

fn write(t: &mut MmioTransport<Block>, offset: u32, value: u32) {
    t.write(u64::from(offset), &value.to_le_bytes());
}

fn read(t: &mut MmioTransport<Block>, offset: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(offset), &mut b);
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // 10 control bytes: flags (1 read-only, 2 EVENT_IDX, 4 FLUSH, 8 raw addresses),
    // queue size, descriptor/avail/used offsets (u16 each, relative to BASE, so past
    // the end too), kick count. The rest is the initial content of guest memory.
    let Some((ctl, contents)) = data.split_first_chunk::<10>() else {
        return;
    };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
    let n = contents.len().min(SIZE);
    mem.write_slice(&contents[..n], GuestAddress(BASE)).unwrap();

    let readonly = ctl[0] & 1 != 0;
    let blk = Block::open(disk::path(), readonly)
        .unwrap()
        .with_execution(Execution::Inline);
    let mut t = MmioTransport::new(blk, mem.clone()).unwrap();
    let mut features = 1u64 << VIRTIO_F_VERSION_1;
    if ctl[0] & 2 != 0 {
        features |= 1 << VIRTIO_RING_F_EVENT_IDX;
    }
    if ctl[0] & 4 != 0 {
        features |= 1 << VIRTIO_BLK_F_FLUSH;
    }
    let word = |i: usize| u16::from_le_bytes([ctl[i], ctl[i + 1]]);
    let size = word(1);
    // Flag 8 keeps the ring addresses as given; otherwise they are aligned so that
    // most inputs reach a running device.
    let align = |w: u16, a: u16| if ctl[0] & 8 != 0 { w } else { w & !(a - 1) };
    let desc = BASE + u64::from(align(word(3), 16));
    let avail = BASE + u64::from(align(word(5), 2));
    let used = BASE + u64::from(align(word(7), 4));

    write(&mut t, VIRTIO_MMIO_STATUS, 1);
    write(&mut t, VIRTIO_MMIO_STATUS, 3);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
    write(&mut t, VIRTIO_MMIO_STATUS, 11);
    write(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
    write(&mut t, VIRTIO_MMIO_QUEUE_NUM, u32::from(size));
    write(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, desc as u32);
    write(&mut t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail as u32);
    write(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, used as u32);
    write(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
    write(&mut t, VIRTIO_MMIO_STATUS, 15);
    if !t.is_activated() {
        return;
    }
    for _ in 0..=ctl[9] % 3 {
        write(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }
    // Buffers may overlap the rings (the guest owns all of this memory), so the used
    // index proves little; what must hold is that the device is still there, either
    // running or flagged for reset, and answers register reads.
    assert!(t.is_activated());
    let status = read(&mut t, VIRTIO_MMIO_STATUS);
    assert_eq!(status & 15, 15);
});
