//! The device on its own thread, woken by kicks and the backend's readiness.

use super::*;

#[test]
fn the_device_thread_moves_frames_both_ways_and_wakes_a_sleeping_guest() {
    let doorbell = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut s = setup_with(TSO, Execution::OwnThread, Some(&doorbell));
    let mem = s.mem.clone();
    // The guest sleeps until the first frame: used_event 0.
    s.rx.set_used_event(&mem, 0);
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    // The kick as KVM delivers it for a registered ioeventfd.
    s.t.queue_event(0).unwrap().write(1).unwrap();
    let f = frame(1000, 7);
    s.send(&f);
    wait_readable(doorbell.as_raw_fd());
    assert_eq!(s.rx.used_idx(&mem), 1);
    assert_eq!(s.bytes(RX0, 1012), delivered(&f));

    // No buffer: the frames wait in the backend until the guest posts and kicks.
    s.send(&frame(20, 1));
    s.send(&frame(30, 2));
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.rx.chain(&mem, &[(RX1, BIG, W)]);
    s.t.queue_event(0).unwrap().write(1).unwrap();
    wait_used(&s.rx, &mem, 3);
    assert_eq!(s.bytes(RX0, 32), delivered(&frame(20, 1)));
    assert_eq!(s.bytes(RX1, 42), delivered(&frame(30, 2)));

    // Transmit, kicked through the transport's QueueNotify.
    mem.write_slice(&frame(64, 8), GuestAddress(TXB)).unwrap();
    s.tx.chain(&mem, &[(TXB, 76, R)]);
    s.kick(TX_QUEUE);
    wait_readable(s.peer.as_raw_fd());
    assert_eq!(s.recv().unwrap(), frame(64, 8));
    wait_used(&s.tx, &mem, 1);

    // Reset joins the thread; frames sent meanwhile stay for the next activation.
    write_reg(&mut s.t, VIRTIO_MMIO_STATUS, 0);
    assert!(!s.t.is_activated());
    s.send(&frame(40, 3));
    s.init(TSO);
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.t.queue_event(0).unwrap().write(1).unwrap();
    wait_used(&s.rx, &mem, 1);
    assert_eq!(s.bytes(RX0, 52), delivered(&frame(40, 3)));
    assert!(s.reports().is_empty(), "{:?}", s.reports());
}

#[test]
fn a_hostile_driver_stops_the_device_thread_without_harm() {
    let mut s = setup_with(TSO, Execution::OwnThread, None);
    let mem = s.mem.clone();
    s.rx.chain(&mem, &[(RX0, 64, W)]);
    s.kick(RX_QUEUE);
    wait_used(&s.rx, &mem, 1);
    // The chain is used first, then the flag raised: wait for the flag.
    let give_up = Instant::now() + Duration::from_secs(20);
    while !s.needs_reset() {
        assert!(Instant::now() < give_up);
        std::thread::yield_now();
    }
    s.assert_fault("receive chain holds 64 bytes");
}
