//! Hostile drivers: every bad chain fails the device (DEVICE_NEEDS_RESET, one report),
//! never the caller, and a reset brings it back.

use super::*;

/// A hostile chain on `queue`: the device consumes it with length 0, needs a reset,
/// says why once, and moves nothing more until the driver resets it.
#[track_caller]
fn hostile(queue: u16, features: u64, parts: &[(u64, u32, u16)], needle: &str) {
    let mut s = setup(features);
    let mem = s.mem.clone();
    let ring = if queue == RX_QUEUE {
        &mut s.rx
    } else {
        &mut s.tx
    };
    ring.chain(&mem, parts);
    s.send(&frame(10, 0));
    s.kick(queue);
    let ring = if queue == RX_QUEUE { &s.rx } else { &s.tx };
    assert_eq!(ring.used_idx(&mem), 1);
    assert_eq!(ring.used(&mem, 0).1, 0);
    s.assert_fault(needle);
    // Stopped: a good chain is left alone, the frame stays in the backend.
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 0);
    // After a reset the device works again, and the frame is still there.
    s.reports.lock().unwrap().clear();
    s.init(TSO);
    assert!(!s.needs_reset());
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used(&mem, 0), (0, 22));
    assert!(s.reports().is_empty());
}

#[test]
fn receive_buffers_outside_device_memory_need_reset() {
    // Below the device's memory: where the monitor's own area lies in a compartment.
    hostile(
        RX_QUEUE,
        TSO,
        &[(0x1000, BIG, W)],
        "outside the device's memory",
    );
    // Straddling its end.
    hostile(RX_QUEUE, TSO, &[(MEM_END - 100, BIG, W)], "0x4ff9c+65562");
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, 12, W), (u64::MAX - 8, BIG, W)],
        "outside",
    );
}

#[test]
fn transmit_buffers_outside_device_memory_need_reset() {
    hostile(
        TX_QUEUE,
        TSO,
        &[(0x1000, 100, R)],
        "outside the device's memory",
    );
    hostile(TX_QUEUE, TSO, &[(TXB, 12, R), (MEM_END, 60, R)], "outside");
}

#[test]
fn oversized_lengths_need_reset() {
    hostile(RX_QUEUE, TSO, &[(RX0, u32::MAX, W)], "outside");
    // Two pieces whose sum passes 4 GiB: virtio-queue cuts the chain.
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, u32::MAX, W), (RX1, u32::MAX, W)],
        "exceeds 4 GiB",
    );
    hostile(
        TX_QUEUE,
        TSO,
        &[(TXB, BIG + 1, R)],
        "transmit chain of 65563 bytes is longer",
    );
}

#[test]
fn wrong_directions_need_reset() {
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, 12, R), (RX0 + 12, BIG, W)],
        "receive chain holds a device-readable descriptor",
    );
    hostile(
        TX_QUEUE,
        TSO,
        &[(TXB, 12, R), (TXB + 12, 60, W)],
        "transmit chain holds a device-writable descriptor",
    );
}

#[test]
fn tiny_receive_buffers_and_short_transmits_need_reset() {
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, 1514, W)],
        "receive queue, chain 0: receive chain holds 1514 bytes; it must hold 65562",
    );
    hostile(
        RX_QUEUE,
        PLAIN,
        &[(RX0, SMALL - 1, W)],
        "holds 1525 bytes; it must hold 1526",
    );
    hostile(
        TX_QUEUE,
        TSO,
        &[(TXB, 11, R)],
        "shorter than the 12-byte header",
    );
}

#[test]
fn looping_chains_and_bad_indexes_need_reset() {
    // A descriptor that chains to itself.
    let mut s = setup(TSO);
    s.rx.put_desc(&s.mem, 0, RX0, 100, W | VRING_DESC_F_NEXT as u16, 0);
    s.rx.post(&s.mem.clone(), 0);
    s.send(&frame(10, 0));
    s.kick(RX_QUEUE);
    s.assert_fault("loops");
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 0);

    // A next index past the table.
    let mut s = setup(TSO);
    s.tx.put_desc(&s.mem, 0, TXB, 12, VRING_DESC_F_NEXT as u16, 999);
    s.tx.post(&s.mem.clone(), 0);
    s.kick(TX_QUEUE);
    s.assert_fault("loops, leaves the descriptor table");

    // A head index past the table.
    let mut s = setup(TSO);
    s.tx.post(&s.mem.clone(), 17);
    s.kick(TX_QUEUE);
    assert!(s.needs_reset());

    // An available index more than a queue ahead of the device.
    let mut s = setup(TSO);
    s.rx.set_avail_idx(&s.mem, 100);
    s.kick(RX_QUEUE);
    s.assert_fault("receive queue: available ring");
}
