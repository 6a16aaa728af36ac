//! The write-back sector cache.

use component_units::MemDisk;
use flexos_vfs::cache::*;
use flexos_vfs::codes::{E_IO, E_NO_SPACE};

#[test]
fn writes_stay_cached_until_sync() {
    let mut c = Cache::new(MemDisk::new(64), 16);
    assert_eq!(c.write_at(1000, b"hello"), Ok(5));
    assert_eq!(c.device().writes, 0);
    assert_eq!(&c.device().bytes[1000..1005], &[0; 5]);
    let mut back = [0u8; 5];
    assert_eq!(c.read_at(1000, &mut back), Ok(5));
    assert_eq!(&back, b"hello");
    assert_eq!(c.sync(), Ok(()));
    assert_eq!(&c.device().bytes[1000..1005], b"hello");
    assert_eq!((c.device().writes, c.device().flushes), (1, 1));
    assert_eq!(c.dirty_blocks(), 0);
}

#[test]
fn unaligned_spans_cross_blocks() {
    let mut disk = MemDisk::new(64);
    for (i, b) in disk.bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut c = Cache::new(disk, 16);
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(c.write_at(4000, &data), Ok(5000));
    c.sync().unwrap();
    let d = &c.device().bytes;
    assert_eq!(&d[4000..9000], &data[..]);
    // Bytes around the span kept their old contents (read before the merge).
    assert_eq!(d[3999], (3999 % 256) as u8);
    assert_eq!(d[9000], (9000 % 256) as u8);
}

#[test]
fn a_whole_block_write_does_not_read() {
    let mut c = Cache::new(MemDisk::new(64), 16);
    c.write_at(BLOCK as u64, &[9; BLOCK]).unwrap();
    assert_eq!(c.device().reads, 0);
    c.write_at(10, &[1]).unwrap();
    assert_eq!(c.device().reads, 1);
}

#[test]
fn the_end_of_the_disk_is_a_limit() {
    // 9 sectors: one whole block and a short one of 512 bytes.
    let mut c = Cache::new(MemDisk::new(9), 16);
    assert_eq!(c.len(), 9 * 512);
    let mut buf = [0u8; 1024];
    assert_eq!(c.read_at(9 * 512 - 100, &mut buf), Ok(100));
    assert_eq!(c.read_at(9 * 512, &mut buf), Ok(0));
    assert_eq!(c.read_at(u64::MAX - 3, &mut buf), Ok(0));
    assert_eq!(c.write_at(9 * 512 - 10, &[7; 20]), Ok(10));
    assert_eq!(c.write_at(9 * 512, &[7; 20]), Err(E_NO_SPACE));
    c.sync().unwrap();
    assert_eq!(&c.device().bytes[9 * 512 - 10..], &[7; 10]);
}

#[test]
fn a_full_cache_writes_back_before_it_forgets() {
    let mut c = Cache::new(MemDisk::new(64), 2);
    for k in 0..5u64 {
        c.write_at(k * BLOCK as u64 + 1, &[k as u8 + 1]).unwrap();
    }
    let mut b = [0u8];
    for k in 0..5u64 {
        c.read_at(k * BLOCK as u64 + 1, &mut b).unwrap();
        assert_eq!(b[0], k as u8 + 1, "block {k}");
    }
    // Evicted blocks reached the device; no flush was asked for.
    assert!(c.device().writes >= 3);
    assert_eq!(c.device().flushes, 0);
}

#[test]
fn device_errors_come_back_as_codes() {
    let mut disk = MemDisk::new(64);
    disk.fail = true;
    let mut c = Cache::new(disk, 4);
    assert_eq!(c.read_at(0, &mut [0; 4]), Err(E_IO));
    assert_eq!(c.write_at(0, &[0; BLOCK]), Ok(BLOCK));
    assert_eq!(c.sync(), Err(E_IO));
    // Still dirty: a later sync can retry.
    assert_eq!(c.dirty_blocks(), 1);
}

#[test]
fn a_sync_writes_every_dirty_block_in_one_batch_then_flushes() {
    let mut c = Cache::new(MemDisk::new(256), 16);
    // Dirtied out of order, two of them adjacent.
    for block in [7u64, 2, 3] {
        c.write_at(block * BLOCK as u64, &[block as u8; BLOCK])
            .unwrap();
    }
    assert_eq!(c.sync(), Ok(()));
    // One call, in ascending sector order, with the flush: one round of device requests.
    assert_eq!(c.device().batches, vec![(vec![16, 24, 56], true)]);
    for block in [2usize, 3, 7] {
        assert_eq!(
            c.device().bytes[block * BLOCK..(block + 1) * BLOCK],
            [block as u8; BLOCK]
        );
    }
    // Nothing dirty: the next sync only flushes.
    assert_eq!(c.sync(), Ok(()));
    assert_eq!(c.device().batches.len(), 1);
    assert_eq!(c.device().flushes, 2);
}

#[test]
fn what_is_written_after_a_barrier_reaches_the_disk_after_a_flush() {
    let mut c = Cache::new(MemDisk::new(256), 16);
    // Data in a high block, then (behind a barrier) the "size" in a low block: sector
    // order alone would write the low block first.
    c.write_at(9 * BLOCK as u64, &[1; 100]).unwrap();
    c.barrier();
    c.write_at(10, &[2; 4]).unwrap();
    assert_eq!(c.sync(), Ok(()));
    assert_eq!(
        c.device().batches,
        vec![(vec![72], true), (vec![0], true)],
        "the data and a flush, then the size and a flush"
    );
    // A block written again after the barrier moves behind it; the barriers are used up.
    c.write_at(0, &[3]).unwrap();
    c.barrier();
    c.write_at(9 * BLOCK as u64, &[4]).unwrap();
    c.write_at(5 * BLOCK as u64, &[5]).unwrap();
    c.barrier();
    c.barrier(); // nothing written in between: no empty batch
    assert_eq!(c.sync(), Ok(()));
    assert_eq!(
        c.device().batches[2..],
        [(vec![0], true), (vec![40, 72], true)]
    );
    // No barrier since: one batch.
    c.write_at(0, &[6]).unwrap();
    c.write_at(9 * BLOCK as u64, &[7]).unwrap();
    assert_eq!(c.sync(), Ok(()));
    assert_eq!(c.device().batches[4..], [(vec![0, 72], true)]);
}

#[test]
fn an_eviction_keeps_the_order_without_a_final_flush() {
    let mut c = Cache::new(MemDisk::new(256), 2);
    c.write_at(9 * BLOCK as u64, &[1]).unwrap();
    c.barrier();
    c.write_at(0, &[2]).unwrap();
    // A third block does not fit: everything goes back first.
    c.write_at(5 * BLOCK as u64, &[3]).unwrap();
    assert_eq!(c.device().batches, vec![(vec![72], true), (vec![0], false)]);
}
