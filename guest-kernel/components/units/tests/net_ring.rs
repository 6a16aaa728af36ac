//! The byte ring between net (producer) and the app (consumer), over a real shared
//! region in memory, including a hostile peer writing garbage indices.

use component_units::Shm;
use flexos_net::ring::{self, DATA, EOF as RING_EOF, OPEN, Reader, RingError, Writer};

#[test]
fn bytes_arrive_in_order_across_the_wrap() {
    let shm = Shm::new();
    let bytes = shm.buf(ring::buffer_len(64));
    let mut w = Writer::create(bytes).unwrap();
    let mut r = Reader::open(bytes).unwrap();
    assert_eq!(w.capacity(), 64);
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut next = 0u8;
    for round in 0..200 {
        let n = (round * 7) % 50 + 1;
        let chunk: Vec<u8> = (0..n)
            .map(|_| {
                next = next.wrapping_add(1);
                next
            })
            .collect();
        let put = w.write(&chunk).unwrap();
        sent.extend_from_slice(&chunk[..put]);
        let mut buf = vec![0u8; (round * 5) % 40 + 1];
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
    }
    assert_eq!(got, sent);
    assert!(sent.len() > 1000, "the ring wrapped many times");
    assert!(w.drained().unwrap());
}

#[test]
fn full_ring_takes_nothing_more_and_reports_free_space() {
    let shm = Shm::new();
    let bytes = shm.buf(ring::buffer_len(32));
    let mut w = Writer::create(bytes).unwrap();
    let mut r = Reader::open(bytes).unwrap();
    assert_eq!(w.write(&[1; 40]).unwrap(), 32);
    assert_eq!(w.write(&[2; 1]).unwrap(), 0);
    assert_eq!(w.free().unwrap(), 0);
    let mut buf = [0u8; 10];
    assert_eq!(r.read(&mut buf).unwrap(), 10);
    // The tail is published in batches (every eighth of the ring: 4 bytes here).
    assert_eq!(w.free().unwrap(), 10);
    assert_eq!(r.available().unwrap(), 22);
}

#[test]
fn end_of_stream_follows_the_data() {
    let shm = Shm::new();
    let bytes = shm.buf(ring::buffer_len(64));
    let mut w = Writer::create(bytes).unwrap();
    let mut r = Reader::open(bytes).unwrap();
    assert!(!r.readable());
    w.write(b"last words").unwrap();
    w.close(RING_EOF);
    assert!(r.readable());
    let mut buf = [0u8; 64];
    assert_eq!(r.read(&mut buf).unwrap(), 10);
    assert_eq!(&buf[..10], b"last words");
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    assert_eq!(r.closed(), RING_EOF);
}

#[test]
fn producer_is_woken_only_once_the_reader_passes_wake_at() {
    let shm = Shm::new();
    let bytes = shm.buf(ring::buffer_len(64));
    let mut w = Writer::create(bytes).unwrap();
    let mut r = Reader::open(bytes).unwrap();
    w.write(&[7; 64]).unwrap();
    w.wake_at(32);
    let mut buf = [0u8; 16];
    r.read(&mut buf).unwrap();
    r.publish();
    assert!(r.take_published());
    assert!(!r.producer_waits(), "16 < 32");
    r.read(&mut buf).unwrap();
    r.publish();
    assert!(r.producer_waits());
    w.wake_at(0);
    assert!(!r.producer_waits());
    assert!(r.take_published());
    assert!(!r.take_published(), "nothing published since");
}

#[test]
fn bad_sizes_are_refused() {
    let shm = Shm::new();
    assert_eq!(
        Writer::create(shm.buf(DATA)).err(),
        Some(RingError::BadSize)
    );
    assert_eq!(
        Writer::create(shm.buf(DATA + 100)).err(),
        Some(RingError::BadSize)
    );
    assert_eq!(Reader::open(shm.buf(64)).err(), Some(RingError::BadSize));
}

/// A hostile producer sets head anywhere: the reader refuses anything that would put
/// more than the capacity (or fewer than nothing) in the ring, and never reads
/// outside the buffer (the buffer sits at the very start of the heap and a page of
/// guard bytes follows it, which a wild read would return as 0xEE).
#[test]
fn reader_refuses_garbage_heads() {
    let shm = Shm::new();
    let len = ring::buffer_len(64);
    let all = shm.buf(len + 64);
    all.fill(0xEE);
    let bytes = shm.buf(len);
    let mut w = Writer::create(bytes).unwrap();
    let mut r = Reader::open(bytes).unwrap();
    w.write(&[1; 8]).unwrap();
    let mut buf = [0u8; 200];
    assert_eq!(r.read(&mut buf[..4]).unwrap(), 4);
    for garbage in [65u64 + 4, u64::MAX, 1 << 63, 3, 1000, u64::MAX - 63] {
        bytes.store_u64(0, garbage);
        let mut fresh = Reader::open(bytes).unwrap();
        let got = fresh.read(&mut buf);
        match got {
            Err(RingError::Corrupt) => {}
            Ok(n) => {
                assert!(n <= 64, "garbage head {garbage} let {n} bytes through");
                assert!(buf[..n].iter().all(|&b| b != 0xEE), "read past the ring");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    // A head behind the tail (the reader has read 4): corrupt, not a huge read.
    bytes.store_u64(0, 2);
    let mut buf = [0u8; 8];
    // The reader still knows 4 bytes it validated earlier; then the bad head shows.
    assert_eq!(r.read(&mut buf).unwrap(), 4);
    assert_eq!(r.read(&mut buf), Err(RingError::Corrupt));
    assert_eq!(r.available(), Err(RingError::Corrupt));
}

/// A hostile consumer sets tail anywhere: the writer refuses to write rather than
/// overwrite unread bytes or write outside the buffer.
#[test]
fn writer_refuses_garbage_tails() {
    let shm = Shm::new();
    let len = ring::buffer_len(64);
    let after = shm.buf(len + 64);
    after.fill(0xEE);
    let bytes = shm.buf(len);
    let mut w = Writer::create(bytes).unwrap();
    w.write(&[5; 40]).unwrap();
    for garbage in [41u64, u64::MAX, 1 << 40, u64::MAX - 20] {
        bytes.store_u64(64, garbage);
        assert_eq!(w.free(), Err(RingError::Corrupt), "tail {garbage}");
        assert_eq!(w.write(&[9; 100]), Err(RingError::Corrupt));
    }
    // A tail that claims everything was read is fine: the space is reused in place;
    // one that then moves backwards is not.
    bytes.store_u64(64, 40);
    assert_eq!(w.free(), Ok(64));
    bytes.store_u64(64, 39);
    assert_eq!(w.free(), Err(RingError::Corrupt));
    bytes.store_u64(64, 40);
    assert_eq!(w.write(&[9; 100]).unwrap(), 64);
    let mut tail_bytes = [0u8; 64];
    after.read(len, &mut tail_bytes).unwrap();
    assert!(tail_bytes.iter().all(|&b| b == 0xEE), "wrote past the ring");
    assert_eq!(ring::RESET, 2);
    assert_eq!(OPEN, 0);
}

#[test]
fn the_arrival_stamp_reaches_the_reader_beside_the_bytes() {
    let shm = Shm::new();
    let bytes = shm.buf(ring::buffer_len(64));
    let mut w = Writer::create(bytes).unwrap();
    let r = Reader::open(bytes).unwrap();
    assert_eq!(r.since(), 0, "a fresh ring has no stamp");
    w.set_since(41);
    w.write(b"GET k\r\n").unwrap();
    assert_eq!(r.since(), 41);
    // The stamp is the producer's word only: the reader's reads leave it alone.
    w.set_since(42);
    assert_eq!(r.since(), 42);
    assert!(r.readable());
}

#[test]
fn a_read_that_drains_the_ring_lets_the_next_bytes_be_stamped() {
    let shm = Shm::new();
    let bytes = shm.buf(ring::buffer_len(64));
    let mut w = Writer::create(bytes).unwrap();
    let mut r = Reader::open(bytes).unwrap();
    w.write(b"PING\r\n").unwrap();
    let mut buf = [0u8; 16];
    // One read takes everything (as a server's one read per readiness does): the
    // producer sees the ring empty without a second read finding nothing.
    assert_eq!(r.read(&mut buf).unwrap(), 6);
    assert_eq!(w.drained(), Ok(true));
    w.write(b"PI").unwrap();
    assert_eq!(r.read(&mut buf[..1]).unwrap(), 1);
    assert_eq!(
        w.drained(),
        Ok(false),
        "a read that leaves bytes publishes nothing new"
    );
}
