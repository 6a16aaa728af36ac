//! The send batch between the POSIX layer and the stack: many connections' bytes in
//! one shared buffer, the stack's answers written back, and a hostile app's garbled
//! entries refused without reading outside the buffer.

use component_units::Shm;
use flexos_net::batch::{self, Entry, HEADER, entry_len};

#[test]
fn entries_go_in_whole_and_answers_come_back_in_order() {
    let shm = Shm::new();
    let buf = shm.buf(4096);
    let put = batch::encode(&buf, &[(3, b"+OK\r\n"), (7, b""), (9, &[0xab; 100])]);
    assert_eq!(put, [5, 0, 100]);
    let a = batch::entry(&buf, 0).unwrap();
    assert_eq!(
        a,
        Entry {
            conn: 3,
            data: HEADER,
            len: 5,
            next: entry_len(5)
        }
    );
    let mut got = [0u8; 5];
    buf.copy_out(a.data, &mut got).unwrap();
    assert_eq!(&got, b"+OK\r\n");
    let b = batch::entry(&buf, a.next).unwrap();
    assert_eq!((b.conn, b.len), (7, 0));
    let c = batch::entry(&buf, b.next).unwrap();
    assert_eq!((c.conn, c.len), (9, 100));
    assert_eq!(
        batch::entry(&buf, c.next),
        None,
        "the batch ends with a -1 entry"
    );
    batch::set_result(&buf, 0, 5);
    batch::set_result(&buf, a.next, 0);
    batch::set_result(&buf, b.next, -104);
    assert_eq!(batch::results(&buf, 3), [5, 0, -104]);
}

#[test]
fn a_full_buffer_takes_a_part_of_the_last_item_and_none_after() {
    let shm = Shm::new();
    let buf = shm.buf(256);
    let big = [1u8; 1000];
    let put = batch::encode(&buf, &[(1, &[2; 100]), (2, &big), (3, b"x")]);
    // 24 + 104 = 128 used; 256 - 128 - 24 = 104 bytes of the second item fit.
    assert_eq!(put, [100, 104]);
    let first = batch::entry(&buf, 0).unwrap();
    let second = batch::entry(&buf, first.next).unwrap();
    assert_eq!((second.conn, second.len, second.next), (2, 104, 256));
    assert_eq!(batch::entry(&buf, second.next), None);
}

#[test]
fn garbled_entries_end_the_batch_inside_the_buffer() {
    let shm = Shm::new();
    let buf = shm.buf(128);
    batch::encode(&buf, &[(1, b"abc")]);
    // A length past the buffer's end.
    buf.store_u64(8, 1 << 40);
    assert_eq!(batch::entry(&buf, 0), None);
    // One that overflows when padded.
    buf.store_u64(8, u64::MAX);
    assert_eq!(batch::entry(&buf, 0), None);
    // A header that does not fit, and an offset past the end.
    assert_eq!(batch::entry(&buf, 120), None);
    assert_eq!(batch::entry(&buf, usize::MAX - 4), None);
    // Exactly to the end is fine.
    buf.store_u64(8, (128 - HEADER) as u64);
    assert_eq!(batch::entry(&buf, 0).unwrap().next, 128);
}
