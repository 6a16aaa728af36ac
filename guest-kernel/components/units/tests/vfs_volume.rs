//! Files on a FAT volume over the cache.

use component_units::MemDisk;
use flexos_vfs::codes::*;
use flexos_vfs::volume::*;

use lamfat::{FatType, FormatVolumeOptions, StdIoWrapper};
use std::io::Cursor;

/// A freshly formatted FAT16 volume of `mib` MiB, 4 KiB clusters (as scripts/mkdisk).
fn formatted(mib: usize) -> MemDisk {
    let mut image = Cursor::new(vec![0u8; mib << 20]);
    let opts = FormatVolumeOptions::new()
        .fat_type(FatType::Fat16)
        .bytes_per_cluster(4096);
    lamfat::format_volume(&mut StdIoWrapper::new(&mut image), opts).unwrap();
    let mut disk = MemDisk::new((mib << 20) / 512);
    disk.bytes = image.into_inner();
    disk
}

/// Mounts what `dev` holds now, for checking what reached the device.
fn remount(bytes: &[u8]) -> Volume<MemDisk> {
    let mut disk = MemDisk::new(bytes.len() / 512);
    disk.bytes.copy_from_slice(bytes);
    Volume::mount(disk).ok().unwrap()
}

fn read_all(v: &mut Volume<MemDisk>, name: &str) -> Vec<u8> {
    let id = v.open(name, false);
    assert!(id >= 0, "open {name}: {id}");
    let mut buf = vec![0u8; v.size(id) as usize];
    assert_eq!(v.read_at(id, 0, &mut buf), buf.len() as i64);
    v.close(id);
    buf
}

#[test]
fn a_synced_file_is_on_the_device() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let id = v.open("bench.db-journal", true);
    assert!(id >= 0);
    assert_eq!(v.write_at(id, 0, b"hello, disk"), 11);
    assert_eq!(v.size(id), 11);
    // Not synced: a remount of the device's bytes does not see the data.
    let before = remount(&v.cache().device().bytes.clone()).exists("bench.db-journal");
    assert_eq!(before, 0);
    let (flushes, batches) = (v.cache().device().flushes, v.cache().device().batches.len());
    assert_eq!(v.sync(id), 0);
    // The size changed: the data (and the FAT) went first, behind a flush, then the
    // directory entry and a flush, so no crash leaves a size over missing data.
    assert_eq!(v.cache().device().flushes, flushes + 2);
    let synced = v.cache().device().batches[batches..].to_vec();
    assert_eq!(synced.len(), 2, "{synced:?}");
    assert!(synced.iter().all(|(_, flushed)| *flushed));
    let mut after = remount(&v.cache().device().bytes.clone());
    assert_eq!(read_all(&mut after, "bench.db-journal"), b"hello, disk");
    // Overwriting in place keeps the size: one batch, one flush.
    let id = v.open("bench.db-journal", false);
    assert_eq!(v.write_at(id, 0, b"HELLO"), 5);
    let (flushes, batches) = (v.cache().device().flushes, v.cache().device().batches.len());
    assert_eq!(v.sync(id), 0);
    assert_eq!(v.cache().device().flushes, flushes + 1);
    assert_eq!(v.cache().device().batches.len(), batches + 1);
    let mut after = remount(&v.cache().device().bytes.clone());
    assert_eq!(read_all(&mut after, "bench.db-journal"), b"HELLO, disk");
}

/// The test clock: nanoseconds since the Unix epoch, moved by the test.
static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn now() -> u64 {
    NOW.load(std::sync::atomic::Ordering::Relaxed)
}

/// With a clock, an overwrite in place rewrites the directory entry (a second flush)
/// only when the modification time moves to another 2-second step: a database's
/// commits within one step cost one flush each, as without a clock.
#[test]
fn the_modification_time_moves_in_fat_steps() {
    use flexos_vfs::clock::Clock;
    use std::sync::atomic::Ordering;
    const S: u64 = 1_000_000_000;
    let t0 = 1_709_213_862 * S; // 2024-02-29 13:37:42 UTC, an even second
    NOW.store(t0, Ordering::Relaxed);
    let mut v = Volume::mount_with(formatted(32), Clock::new(now))
        .ok()
        .unwrap();
    let id = v.open("bench.db", true);
    assert_eq!(v.write_at(id, 0, b"0123456789"), 10);
    assert_eq!(v.sync(id), 0);
    let flushes_per_sync = |v: &mut Volume<MemDisk>, at: u64| {
        NOW.store(at, Ordering::Relaxed);
        assert_eq!(v.write_at(id, 0, b"abc"), 3);
        let before = v.cache().device().flushes;
        assert_eq!(v.sync(id), 0);
        v.cache().device().flushes - before
    };
    assert_eq!(flushes_per_sync(&mut v, t0 + 1), 1, "the same step");
    assert_eq!(
        flushes_per_sync(&mut v, t0 + S + 999_999_999),
        1,
        "still 42 s"
    );
    assert_eq!(
        flushes_per_sync(&mut v, t0 + 2 * S),
        2,
        "44 s: the entry too"
    );
    assert_eq!(flushes_per_sync(&mut v, t0 + 2 * S + 5), 1);
}

#[test]
fn writes_past_the_end_zero_fill_and_reads_stop_at_the_end() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let id = v.open("x", true);
    assert_eq!(v.write_at(id, 10_000, b"end"), 3);
    assert_eq!(v.size(id), 10_003);
    let mut buf = vec![1u8; 20_000];
    assert_eq!(v.read_at(id, 0, &mut buf), 10_003);
    assert!(buf[..10_000].iter().all(|&b| b == 0));
    assert_eq!(&buf[10_000..10_003], b"end");
    assert_eq!(v.read_at(id, 10_003, &mut buf), 0);
    assert_eq!(v.read_at(id, 1 << 40, &mut buf), 0);
    // Overwrite in the middle.
    assert_eq!(v.write_at(id, 5, b"mid"), 3);
    assert_eq!(v.read_at(id, 4, &mut buf[..5]), 5);
    assert_eq!(&buf[..5], b"\0mid\0");
}

#[test]
fn truncate_cuts_and_extends_durably() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let id = v.open("t", true);
    v.write_at(id, 0, &[7u8; 9000]);
    assert_eq!(v.truncate(id, 100), 0);
    assert_eq!(v.size(id), 100);
    let mut after = remount(&v.cache().device().bytes.clone());
    assert_eq!(read_all(&mut after, "t"), vec![7u8; 100]);
    assert_eq!(v.truncate(id, 200), 0);
    let mut after = remount(&v.cache().device().bytes.clone());
    let mut want = vec![7u8; 100];
    want.resize(200, 0);
    assert_eq!(read_all(&mut after, "t"), want);
}

#[test]
fn delete_is_durable_and_closes_the_file() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let id = v.open("gone.txt", true);
    v.write_at(id, 0, b"x");
    v.sync(id);
    assert_eq!(v.exists("gone.txt"), 1);
    assert_eq!(v.delete("gone.txt"), 0);
    assert_eq!(v.exists("gone.txt"), 0);
    assert_eq!(v.size(id), E_BAD_FILE);
    assert_eq!(
        remount(&v.cache().device().bytes.clone()).exists("gone.txt"),
        0
    );
    assert_eq!(v.delete("gone.txt"), E_NOT_FOUND);
}

#[test]
fn rename_is_durable() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let id = v.open("temp-7.rdb", true);
    v.write_at(id, 0, b"snapshot");
    v.close(id);
    let id = v.open("dump.rdb", true);
    v.write_at(id, 0, b"older snapshot");
    v.sync(id);
    v.close(id);
    assert_eq!(v.rename("temp-7.rdb", "dump.rdb"), 0);
    // The disk, without any further sync, holds the renamed file and nothing else.
    let mut after = remount(&v.cache().device().bytes.clone());
    assert_eq!(read_all(&mut after, "dump.rdb"), b"snapshot");
    assert_eq!(after.exists("temp-7.rdb"), 0);
}

#[test]
fn bad_ids_and_missing_files_get_codes() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    assert_eq!(v.open("missing", false), E_NOT_FOUND);
    for id in [-1, 0, 5, i64::MAX] {
        assert_eq!(v.size(id), E_BAD_FILE);
        assert_eq!(v.read_at(id, 0, &mut [0; 4]), E_BAD_FILE);
        assert_eq!(v.write_at(id, 0, b"a"), E_BAD_FILE);
        assert_eq!(v.close(id), E_BAD_FILE);
    }
    let id = v.open("f", true);
    assert_eq!(v.close(id), 0);
    assert_eq!(v.close(id), E_BAD_FILE);
    let g = v.open("g", true);
    assert_eq!(v.write_at(g, u32::MAX as u64, b"ab"), E_NO_SPACE);
}

#[test]
fn open_files_are_limited_and_ids_reused() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let ids: Vec<i64> = (0..MAX_OPEN).map(|_| v.open("same", true)).collect();
    assert!(ids.iter().all(|&id| id >= 0));
    assert_eq!(v.open("same", true), E_TOO_MANY);
    assert_eq!(v.close(ids[3]), 0);
    assert_eq!(v.open("same", true), ids[3]);
}

#[test]
fn list_shows_files_with_sizes() {
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    let a = v.open("Alpha.txt", true);
    v.write_at(a, 0, b"12345");
    v.close(a);
    v.open("b", true);
    assert_eq!(v.list().unwrap(), "Alpha.txt\t5\nb\t0\n");
}

#[test]
fn a_disk_without_fat_is_a_clean_error() {
    for fill in [0u8, 0xff, 0x5a] {
        let mut disk = MemDisk::new(2048);
        disk.bytes.fill(fill);
        match Volume::mount(disk) {
            Ok(_) => panic!("mounted a disk of {fill:#x} bytes"),
            Err((c, why)) => {
                assert_eq!(c, E_NOT_FAT);
                assert!(
                    why.starts_with("the disk holds no FAT file system"),
                    "{why}"
                );
            }
        }
    }
    let mut disk = MemDisk::new(2048);
    disk.fail = true;
    assert_eq!(Volume::mount(disk).err().map(|e| e.0), Some(E_IO));
}

#[test]
fn a_new_name_starting_beyond_ascii_is_refused_not_a_panic() {
    // lamfat's short-name generator sliced such a name inside its first character and
    // panicked, which crashed the vfs compartment.
    let mut v = Volume::mount(formatted(32)).ok().unwrap();
    assert_eq!(v.open("\u{e9}t\u{e9}.txt", true), E_INVALID);
    assert_eq!(v.open("\u{1f600}", true), E_INVALID);
    assert_eq!(v.open("\u{e9}t\u{e9}.txt", false), E_NOT_FOUND);
    assert_eq!(v.exists("\u{e9}t\u{e9}.txt"), 0);
    assert!(v.open("x\u{e9}t\u{e9}.txt", true) >= 0);
    assert_eq!(v.list().unwrap(), "x\u{e9}t\u{e9}.txt\t0\n");
}
