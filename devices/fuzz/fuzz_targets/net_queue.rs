//! virtio-net under a guest that controls every byte of its memory: both descriptor
//! tables and rings, every buffer address and length, the queue sizes and ring
//! addresses, and the frames the host sends. The transport, the chain checks and the
//! receive/transmit paths must never panic or move a byte outside guest memory (every
//! iovec is built from vm-memory's checked slices); the device either runs or shows
//! DEVICE_NEEDS_RESET.

#![no_main]

use std::os::fd::AsRawFd;

use devices::net::{Execution, Net, SocketBackend, ETH_FRAME_LEN, MAX_FRAME_LEN, VNET_HDR_LEN};
use devices::virtio::mmio::MmioTransport;
use libfuzzer_sys::fuzz_target;
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_bindings::bindings::virtio_net::{VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4};
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const BASE: u64 = 0x1_0000;
/// Room for a few receive buffers of the largest size (65562 bytes).
const SIZE: usize = 0x3_0000;

type Dev = MmioTransport<Net<SocketBackend>>;

fn write(t: &mut Dev, offset: u32, value: u32) {
    t.write(u64::from(offset), &value.to_le_bytes());
}

fn read(t: &mut Dev, offset: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(offset), &mut b);
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // 20 control bytes: flags (1 EVENT_IDX, 2 GUEST_CSUM+GUEST_TSO4, 4 raw addresses),
    // then for each queue (rx, tx): size (u16), descriptor/avail/used offsets (u16
    // each, relative to BASE); then frame count (mod 4) and a frame-length seed (u16).
    // The rest is the initial content of guest memory.
    let Some((ctl, contents)) = data.split_first_chunk::<20>() else {
        return;
    };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
    let n = contents.len().min(SIZE);
    mem.write_slice(&contents[..n], GuestAddress(BASE)).unwrap();

    let (backend, peer) = SocketBackend::pair().unwrap();
    let net = Net::new(backend, [2, 0, 0, 0, 0, 1])
        .with_execution(Execution::Inline)
        .with_poll(std::time::Duration::ZERO)
        .with_report(std::sync::Arc::new(|_: &str| {}));
    let mut t = MmioTransport::new(net, mem.clone()).unwrap();

    let mut features = 1u64 << VIRTIO_F_VERSION_1;
    if ctl[0] & 1 != 0 {
        features |= 1 << VIRTIO_RING_F_EVENT_IDX;
    }
    let tso = ctl[0] & 2 != 0;
    if tso {
        features |= (1 << VIRTIO_NET_F_GUEST_CSUM) | (1 << VIRTIO_NET_F_GUEST_TSO4);
    }
    let word = |i: usize| u16::from_le_bytes([ctl[i], ctl[i + 1]]);
    // Flag 4 keeps the ring addresses as given; otherwise they are aligned so that
    // most inputs reach a running device.
    let align = |w: u16, a: u16| if ctl[0] & 4 != 0 { w } else { w & !(a - 1) };

    write(&mut t, VIRTIO_MMIO_STATUS, 1);
    write(&mut t, VIRTIO_MMIO_STATUS, 3);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
    write(&mut t, VIRTIO_MMIO_STATUS, 11);
    for q in 0..2u32 {
        let at = 1 + 8 * q as usize;
        write(&mut t, VIRTIO_MMIO_QUEUE_SEL, q);
        write(&mut t, VIRTIO_MMIO_QUEUE_NUM, u32::from(word(at)));
        let desc = BASE + u64::from(align(word(at + 2), 16));
        let avail = BASE + u64::from(align(word(at + 4), 2));
        let used = BASE + u64::from(align(word(at + 6), 4));
        write(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, desc as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, used as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    write(&mut t, VIRTIO_MMIO_STATUS, 15);
    if !t.is_activated() {
        return;
    }

    // The host sends a few frames, up to the largest the guest negotiated and one
    // byte more (which must be counted, never cut).
    let max = VNET_HDR_LEN + if tso { MAX_FRAME_LEN } else { ETH_FRAME_LEN } + 1;
    let seed = usize::from(word(18));
    for i in 0..usize::from(ctl[17] % 4) {
        let len = (seed * (i + 1) * 7919) % max;
        let frame = vec![i as u8; len.max(VNET_HDR_LEN)];
        // SAFETY: `frame` is valid for reads of its length for the call.
        unsafe { libc::send(peer.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    }
    write(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    write(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    t.device_mut().process();

    // Whatever the guest sent reached the host whole or not at all.
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        // SAFETY: `buf` is valid for writes of its length for the call.
        let got = unsafe {
            libc::recv(
                peer.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if got < 0 {
            break;
        }
        assert!(got as usize >= VNET_HDR_LEN && got as usize <= VNET_HDR_LEN + MAX_FRAME_LEN);
    }
    // Buffers may overlap the rings (the guest owns all of this memory), so the used
    // indexes prove little; what must hold is that the device is still there, either
    // running or flagged for reset, and answers register reads.
    assert!(t.is_activated());
    assert_eq!(read(&mut t, VIRTIO_MMIO_STATUS) & 15, 15);
    let stats = t.device().stats();
    let faults = stats.faults.load(std::sync::atomic::Ordering::Relaxed);
    assert!(faults <= 1);
    assert_eq!(faults == 1, read(&mut t, VIRTIO_MMIO_STATUS) & 0x40 != 0);
});
