//! The relay rings between the driver and net in another compartment (netdev::relay),
//! over a real shared region in memory, including hostile indices (the ring itself is
//! rpc-shm's spsc, whose own tests go further).

use component_units::Shm;
use flexos_netdev::relay::*;

#[test]
fn entries_cross_in_order_and_a_full_ring_refuses() {
    let shm = Shm::new();
    let b = shm.buf(ring_len(8) + 64);
    let mut p = Producer::new(b, 64, 8).unwrap();
    let mut c = Consumer::new(b, 64, 8).unwrap();
    let mut next = 0u64;
    let mut expect = 0u64;
    for round in 0..100 {
        for _ in 0..(round % 11) {
            if p.push(next * 3 + 1).unwrap() {
                next += 1;
            }
        }
        assert!(p.len().unwrap() <= 8);
        for _ in 0..(round % 7) {
            match c.pop().unwrap() {
                Some(v) => {
                    assert_eq!(v, expect * 3 + 1);
                    expect += 1;
                }
                None => break,
            }
        }
    }
    while let Some(v) = c.pop().unwrap() {
        assert_eq!(v, expect * 3 + 1);
        expect += 1;
    }
    assert_eq!(expect, next);
    assert!(next > 100);
    for i in 0..8 {
        assert!(p.push(i).unwrap());
    }
    assert!(!p.push(99).unwrap(), "full");
    assert_eq!(c.available().unwrap(), 8);
}

#[test]
fn hostile_indices_are_refused() {
    let shm = Shm::new();
    let b = shm.buf(ring_len(8));
    let mut p = Producer::new(b, 0, 8).unwrap();
    let mut c = Consumer::new(b, 0, 8).unwrap();
    p.push(1).unwrap();
    // A producer claiming more than a ring's worth.
    b.store_u64(0, 9);
    assert_eq!(c.pop(), Err(RelayError::Corrupt));
    b.store_u64(0, u64::MAX);
    assert_eq!(c.available(), Err(RelayError::Corrupt));
    b.store_u64(0, 1);
    assert_eq!(c.pop(), Ok(Some(1)));
    // A consumer whose tail runs ahead of the head, or back.
    b.store_u64(64, 5);
    assert_eq!(p.push(2), Err(RelayError::Corrupt));
    b.store_u64(64, 1);
    assert_eq!(p.push(2), Ok(true));
    b.store_u64(64, 0);
    assert_eq!(p.len(), Err(RelayError::Corrupt));
}

#[test]
fn bad_layouts_are_refused() {
    let shm = Shm::new();
    let b = shm.buf(ring_len(8));
    assert!(Producer::new(b, 0, 6).is_err(), "not a power of two");
    assert!(Producer::new(b, 0, 16).is_err(), "too small");
    assert!(Consumer::new(b, 4, 8).is_err(), "misaligned");
    assert!(Consumer::new(b, usize::MAX - 8, 8).is_err(), "overflow");
    // The four rings and the waiting word do not overlap, and all fit the block.
    let parts = [CTRL_RECEIVED, CTRL_RELEASED, CTRL_SEND, CTRL_SENT];
    let mut end = CTRL_WAITING + 8;
    for at in parts {
        assert!(at >= end);
        end = at + ring_len(RELAY_ENTRIES);
    }
    assert_eq!(end, CTRL_LEN);
}
