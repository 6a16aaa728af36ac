//! Frames both ways over a socket pair, inline: whole frames, num_buffers, frames that
//! wait for buffers, notifications, a closed or refusing host side.

use super::*;

#[test]
fn identity_features_and_mac() {
    let (mut t, _peer, _) = device(&memory(), Execution::Inline);
    assert_eq!(read_reg(&mut t, VIRTIO_MMIO_DEVICE_ID), 1);
    write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    let low = read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES);
    write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    let high = read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES);
    let offered = u64::from(low) | (u64::from(high) << 32);
    // VERSION_1, MAC, CSUM, HOST_TSO4, GUEST_CSUM, GUEST_TSO4, EVENT_IDX; never
    // MRG_RXBUF (15).
    assert_eq!(
        offered,
        (1 << 32) | (1 << 5) | (1 << 0) | (1 << 11) | (1 << 1) | (1 << 7) | (1 << 29)
    );
    for sel in [0, 1] {
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, sel);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    }
    let mut mac = [0u8; 8];
    t.read(0x100, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 9, 0, 0]);
    t.write(0x100, &[1, 1, 1, 1, 1, 1]);
    let mut mac = [0u8; 6];
    t.read(0x100, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 9], "read-only");
}

#[test]
fn frames_land_whole_in_guest_buffers_with_num_buffers_one() {
    let mut s = setup(TSO);
    assert_eq!(s.t.device().backend().offload(), Some((true, true)));
    // A chain with the header in its own descriptor, and one of a single piece.
    s.rx.chain(&s.mem.clone(), &[(RX0, 12, W), (RX0 + 12, BIG - 12, W)]);
    s.rx.chain(&s.mem.clone(), &[(RX1, BIG, W)]);
    let small = frame(60, 1);
    let largest = frame(MAX_FRAME_LEN, 2);
    s.send(&small);
    s.send(&largest);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 2);
    assert_eq!(s.rx.used(&s.mem, 0), (0, 72));
    assert_eq!(s.rx.used(&s.mem, 1), (2, BIG));
    assert_eq!(s.bytes(RX0, 72), delivered(&small));
    assert_eq!(s.bytes(RX1, BIG as usize), delivered(&largest));
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(
        s.stats().rx_bytes.load(Ordering::Relaxed),
        (60 + MAX_FRAME_LEN) as u64
    );
    assert!(!s.needs_reset());
    assert!(s.reports().is_empty());
}

#[test]
fn frames_wait_in_the_backend_until_the_guest_posts_buffers() {
    let mut s = setup(TSO);
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(100 + i, i as u8)).collect();
    for f in &frames {
        s.send(f);
    }
    // No buffer at all: nothing is taken, nothing is lost.
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 0);
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 1);
    assert_eq!(s.bytes(RX0, 112), delivered(&frames[0]));
    // The guest took it; it posts the same buffer and another one.
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.rx.chain(&s.mem.clone(), &[(RX1, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 3);
    assert_eq!(s.bytes(RX0, 113), delivered(&frames[1]));
    assert_eq!(s.bytes(RX1, 114), delivered(&frames[2]));
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 3);
    assert_eq!(s.stats().rx_oversized.load(Ordering::Relaxed), 0);
    // A buffer and no frame: it stays available for the next one.
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 3);
    s.send(&frames[0]);
    s.t.device_mut().process();
    assert_eq!(s.rx.used_idx(&s.mem), 4);
}

#[test]
fn without_tso_a_receive_chain_needs_header_and_1514_bytes() {
    let mut s = setup(PLAIN);
    assert_eq!(s.t.device().backend().offload(), Some((false, false)));
    s.rx.chain(&s.mem.clone(), &[(RX0, SMALL, W)]);
    let f = frame(ETH_FRAME_LEN, 3);
    s.send(&f);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used(&s.mem, 0), (0, SMALL));
    assert_eq!(s.bytes(RX0, SMALL as usize), delivered(&f));
}

#[test]
fn a_frame_longer_than_negotiated_is_counted_and_reported_not_cut() {
    let mut s = setup(PLAIN);
    s.rx.chain(&s.mem.clone(), &[(RX0, SMALL, W)]);
    s.send(&frame(ETH_FRAME_LEN + 1, 4));
    let next = frame(50, 5);
    s.send(&next);
    s.kick(RX_QUEUE);
    // The long frame never reached the guest; the next one took the buffer.
    assert_eq!(s.rx.used_idx(&s.mem), 1);
    assert_eq!(s.rx.used(&s.mem, 0), (0, 62));
    assert_eq!(s.bytes(RX0, 62), delivered(&next));
    assert_eq!(s.stats().rx_oversized.load(Ordering::Relaxed), 1);
    let reports = s.reports();
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].contains("dropped a 1527-byte frame"),
        "{reports:?}"
    );
    assert!(!s.needs_reset());
}

#[test]
fn transmitted_chains_reach_the_host_whole() {
    let mut s = setup(TSO);
    let f = frame(3000, 6);
    s.mem.write_slice(&f, GuestAddress(TXB)).unwrap();
    // Header and frame split unevenly over three descriptors.
    s.tx.chain(
        &s.mem.clone(),
        &[
            (TXB, 5, R),
            (TXB + 5, 1000, R),
            (TXB + 1005, 3007 - 1005, R),
        ],
    );
    s.tx.chain(&s.mem.clone(), &[(TXB, 12 + 60, R)]);
    s.kick(TX_QUEUE);
    assert_eq!(s.tx.used_idx(&s.mem), 2);
    assert_eq!(s.tx.used(&s.mem, 0), (0, 0));
    assert_eq!(s.tx.used(&s.mem, 1), (3, 0));
    assert_eq!(s.recv().unwrap(), &f[..3007]);
    assert_eq!(s.recv().unwrap(), &f[..72]);
    assert_eq!(s.recv(), None);
    assert_eq!(s.stats().tx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(s.stats().tx_bytes.load(Ordering::Relaxed), 2995 + 60);
}

#[test]
fn used_buffers_ring_the_interrupt_only_when_used_event_asks() {
    let doorbell = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut s = setup_with(TSO, Execution::Inline, Some(&doorbell));
    // A driver that polls: used_event far ahead, no wake-up.
    s.rx.set_used_event(&s.mem, 100);
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.send(&frame(10, 0));
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 1);
    assert!(doorbell.read().is_err(), "woken though it asked not to be");
    // A driver about to sleep until the next frame: used_event = used index it has.
    s.rx.set_used_event(&s.mem, 1);
    s.rx.chain(&s.mem.clone(), &[(RX1, BIG, W)]);
    s.send(&frame(10, 0));
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 2);
    assert_eq!(doorbell.read().unwrap(), 1);
    // Transmit completions too.
    s.tx.set_used_event(&s.mem, 0);
    s.mem.write_slice(&frame(20, 0), GuestAddress(TXB)).unwrap();
    s.tx.chain(&s.mem.clone(), &[(TXB, 32, R)]);
    s.kick(TX_QUEUE);
    assert_eq!(doorbell.read().unwrap(), 1);
}

#[test]
fn a_closed_backend_is_reported_once_and_transmits_are_counted() {
    let mut s = setup(TSO);
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    let (_, other) = SocketBackend::pair().unwrap();
    // Close the host side.
    s.peer = other;
    s.kick(RX_QUEUE);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 0);
    s.mem.write_slice(&frame(20, 0), GuestAddress(TXB)).unwrap();
    s.tx.chain(&s.mem.clone(), &[(TXB, 32, R)]);
    s.kick(TX_QUEUE);
    assert_eq!(s.tx.used(&s.mem, 0), (0, 0));
    assert_eq!(s.stats().tx_errors.load(Ordering::Relaxed), 1);
    assert!(!s.needs_reset());
    let reports = s.reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].contains("backend closed"), "{reports:?}");
    assert!(
        reports[1].contains("refused a transmitted frame"),
        "{reports:?}"
    );
}

/// A backend whose host refuses the offloads (a tap of an old kernel).
struct NoOffload(OwnedFd);

impl AsRawFd for NoOffload {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl Backend for NoOffload {
    fn set_offload(&self, _csum: bool, _tso4: bool) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EINVAL))
    }
}

#[test]
fn offloads_the_host_refuses_keep_the_device_from_starting() {
    let mem = memory();
    let (_, fd) = SocketBackend::pair().unwrap();
    let net = Net::new(NoOffload(fd), DEFAULT_MAC).with_execution(Execution::Inline);
    let mut s = Setup {
        mem: mem.clone(),
        t: MmioTransport::new(net, mem).unwrap(),
        rx: Ring::new(MEM_START, 16),
        tx: Ring::new(MEM_START + 0x3000, 16),
        peer: SocketBackend::pair().unwrap().1,
        reports: Arc::default(),
    };
    let t = &mut s.t;
    write_reg(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    let drv = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    write_reg(t, VIRTIO_MMIO_STATUS, drv);
    write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    write_reg(t, VIRTIO_MMIO_STATUS, drv | VIRTIO_CONFIG_S_FEATURES_OK);
    for (sel, ring) in [(0u32, &s.rx), (1, &s.tx)] {
        write_reg(t, VIRTIO_MMIO_QUEUE_SEL, sel);
        write_reg(t, VIRTIO_MMIO_QUEUE_DESC_LOW, ring.desc as u32);
        write_reg(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, ring.avail as u32);
        write_reg(t, VIRTIO_MMIO_QUEUE_USED_LOW, ring.used as u32);
        write_reg(t, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    write_reg(
        t,
        VIRTIO_MMIO_STATUS,
        drv | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK,
    );
    assert!(!s.t.is_activated());
    assert!(s.needs_reset());
}
