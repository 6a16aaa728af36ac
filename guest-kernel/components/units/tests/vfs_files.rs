//! The `fs` semantics, checked against both file systems the vfs server can run on: the
//! FAT volume (on a disk in memory) and the RAM file system. Every check runs on both,
//! so the RAM file system cannot drift from what the volume does.

use component_units::MemDisk;
use flexos_vfs::codes::*;
use flexos_vfs::files::Files;
use flexos_vfs::ramfs::RamFs;
use flexos_vfs::volume::{MAX_FILE, MAX_OPEN, Volume};

use lamfat::{FatType, FormatVolumeOptions, StdIoWrapper};
use std::io::Cursor;

/// A freshly formatted FAT16 volume of 32 MiB, 4 KiB clusters (as scripts/mkdisk).
fn fat() -> Volume<MemDisk> {
    let mut image = Cursor::new(vec![0u8; 32 << 20]);
    let opts = FormatVolumeOptions::new()
        .fat_type(FatType::Fat16)
        .bytes_per_cluster(4096);
    lamfat::format_volume(&mut StdIoWrapper::new(&mut image), opts).unwrap();
    let mut disk = MemDisk::new((32 << 20) / 512);
    disk.bytes = image.into_inner();
    Volume::mount(disk).ok().unwrap()
}

/// Runs `check` on a fresh FAT volume, then on a fresh RAM file system (16 MiB cap);
/// `check` gets the kind's name for its messages.
fn each(check: impl Fn(&str, &mut dyn Files)) {
    check("fat", &mut fat());
    check("ram", &mut RamFs::new(16 << 20));
}

fn read_all(kind: &str, fs: &mut dyn Files, id: i64) -> Vec<u8> {
    let size = fs.size(id);
    assert!(size >= 0, "{kind}: size {size}");
    let mut buf = vec![0u8; size as usize];
    assert_eq!(fs.read_at(id, 0, &mut buf), size, "{kind}");
    buf
}

#[test]
fn open_finds_or_creates_and_create_keeps_the_data() {
    each(|kind, fs| {
        assert_eq!(fs.open("missing", false), E_NOT_FOUND, "{kind}");
        assert_eq!(fs.exists("missing"), 0, "{kind}");
        let id = fs.open("Data.db", true);
        assert_eq!(id, 0, "{kind}");
        assert_eq!(fs.size(id), 0, "{kind}");
        assert_eq!(fs.write_at(id, 0, b"hello"), 5, "{kind}");
        assert_eq!(fs.sync(id), 0, "{kind}");
        assert_eq!(fs.close(id), 0, "{kind}");
        // Names match with ASCII case folded; a create of an existing file opens it.
        assert_eq!(fs.exists("data.DB"), 1, "{kind}");
        let id = fs.open("DATA.DB", true);
        assert_eq!(id, 0, "{kind}");
        assert_eq!(read_all(kind, fs, id), b"hello", "{kind}");
        let again = fs.open("data.db", false);
        assert_eq!(again, 1, "{kind}");
        assert_eq!(read_all(kind, fs, again), b"hello", "{kind}");
        // The name keeps the case it was created with.
        assert_eq!(fs.list().unwrap(), "Data.db\t5\n", "{kind}");
    });
}

#[test]
fn writes_past_the_end_zero_fill_and_reads_stop_at_the_end() {
    each(|kind, fs| {
        let id = fs.open("x", true);
        assert_eq!(fs.write_at(id, 10_000, b"end"), 3, "{kind}");
        assert_eq!(fs.size(id), 10_003, "{kind}");
        let mut buf = vec![1u8; 20_000];
        assert_eq!(fs.read_at(id, 0, &mut buf), 10_003, "{kind}");
        assert!(buf[..10_000].iter().all(|&b| b == 0), "{kind}");
        assert_eq!(&buf[10_000..10_003], b"end", "{kind}");
        assert_eq!(fs.read_at(id, 10_003, &mut buf), 0, "{kind}");
        assert_eq!(fs.read_at(id, 1 << 40, &mut buf), 0, "{kind}");
        assert_eq!(fs.read_at(id, u64::MAX, &mut buf), 0, "{kind}");
        // A short buffer reads what fits; an empty one reads nothing.
        assert_eq!(fs.read_at(id, 9_999, &mut buf[..2]), 2, "{kind}");
        assert_eq!(&buf[..2], b"\0e", "{kind}");
        assert_eq!(fs.read_at(id, 0, &mut []), 0, "{kind}");
        // Overwrite in the middle keeps the size.
        assert_eq!(fs.write_at(id, 5, b"mid"), 3, "{kind}");
        assert_eq!(fs.read_at(id, 4, &mut buf[..5]), 5, "{kind}");
        assert_eq!(&buf[..5], b"\0mid\0", "{kind}");
        assert_eq!(fs.size(id), 10_003, "{kind}");
        // An empty write past the end still fills the gap.
        assert_eq!(fs.write_at(id, 12_000, b""), 0, "{kind}");
        assert_eq!(fs.size(id), 12_000, "{kind}");
        assert_eq!(fs.read_at(id, 10_002, &mut buf[..4]), 4, "{kind}");
        assert_eq!(&buf[..4], b"d\0\0\0", "{kind}");
    });
}

#[test]
fn truncate_cuts_and_extends_with_zeros() {
    each(|kind, fs| {
        let id = fs.open("t", true);
        assert_eq!(fs.write_at(id, 0, &[7u8; 9000]), 9000, "{kind}");
        assert_eq!(fs.truncate(id, 100), 0, "{kind}");
        assert_eq!(fs.size(id), 100, "{kind}");
        assert_eq!(fs.truncate(id, 200), 0, "{kind}");
        let mut want = vec![7u8; 100];
        want.resize(200, 0);
        assert_eq!(read_all(kind, fs, id), want, "{kind}");
        // The same size, and back to empty.
        assert_eq!(fs.truncate(id, 200), 0, "{kind}");
        assert_eq!(fs.truncate(id, 0), 0, "{kind}");
        assert_eq!(fs.size(id), 0, "{kind}");
        assert_eq!(fs.truncate(id, MAX_FILE + 1), E_NO_SPACE, "{kind}");
        // The size limit is checked before the id, as for writes.
        assert_eq!(fs.truncate(7, MAX_FILE + 1), E_NO_SPACE, "{kind}");
        assert_eq!(fs.truncate(7, 1), E_BAD_FILE, "{kind}");
    });
}

#[test]
fn files_stop_at_the_fat_limit() {
    each(|kind, fs| {
        let id = fs.open("g", true);
        assert_eq!(fs.write_at(id, MAX_FILE, b"ab"), E_NO_SPACE, "{kind}");
        assert_eq!(fs.write_at(id, u64::MAX, b"a"), E_NO_SPACE, "{kind}");
        assert_eq!(fs.write_at(9, MAX_FILE, b"ab"), E_NO_SPACE, "{kind}");
        assert_eq!(fs.size(id), 0, "{kind}");
    });
}

#[test]
fn delete_closes_every_id_on_the_file() {
    each(|kind, fs| {
        let a = fs.open("gone.txt", true);
        let b = fs.open("gone.txt", false);
        let other = fs.open("kept", true);
        assert_eq!((a, b, other), (0, 1, 2), "{kind}");
        assert_eq!(fs.write_at(a, 0, b"x"), 1, "{kind}");
        assert_eq!(fs.sync(a), 0, "{kind}");
        assert_eq!(fs.delete("GONE.TXT"), 0, "{kind}");
        assert_eq!(fs.exists("gone.txt"), 0, "{kind}");
        for id in [a, b] {
            assert_eq!(fs.size(id), E_BAD_FILE, "{kind}");
            assert_eq!(fs.write_at(id, 0, b"y"), E_BAD_FILE, "{kind}");
            assert_eq!(fs.close(id), E_BAD_FILE, "{kind}");
        }
        assert_eq!(fs.size(other), 0, "{kind}");
        assert_eq!(fs.delete("gone.txt"), E_NOT_FOUND, "{kind}");
        assert_eq!(fs.open("gone.txt", false), E_NOT_FOUND, "{kind}");
        // The freed ids are reused, lowest first; a new file of the name starts empty.
        assert_eq!(fs.open("gone.txt", true), 0, "{kind}");
        assert_eq!(fs.size(0), 0, "{kind}");
        // It took the deleted file's place in the directory.
        assert_eq!(fs.list().unwrap(), "gone.txt\t0\nkept\t0\n", "{kind}");
    });
}

#[test]
fn rename_replaces_the_target_and_refuses_open_names() {
    each(|kind, fs| {
        let tmp = fs.open("temp-1.rdb", true);
        assert_eq!(fs.write_at(tmp, 0, b"new"), 3, "{kind}");
        let old = fs.open("dump.rdb", true);
        assert_eq!(fs.write_at(old, 0, b"old data"), 8, "{kind}");
        // Either name open: refused, nothing changes.
        assert_eq!(fs.rename("temp-1.rdb", "dump.rdb"), E_BUSY, "{kind}");
        assert_eq!(fs.close(tmp), 0, "{kind}");
        assert_eq!(fs.rename("temp-1.rdb", "dump.rdb"), E_BUSY, "{kind}");
        assert_eq!(fs.close(old), 0, "{kind}");
        // Replaces the target: one file of the new name, with the renamed bytes.
        assert_eq!(fs.rename("temp-1.rdb", "dump.rdb"), 0, "{kind}");
        assert_eq!(fs.exists("temp-1.rdb"), 0, "{kind}");
        let id = fs.open("dump.rdb", false);
        assert_eq!(read_all(kind, fs, id), b"new", "{kind}");
        assert_eq!(fs.close(id), 0, "{kind}");
        assert_eq!(fs.list().unwrap(), "dump.rdb\t3\n", "{kind}");
        // A missing source, and a name that cannot be created.
        assert_eq!(fs.rename("missing", "x"), E_NOT_FOUND, "{kind}");
        assert_eq!(fs.rename("dump.rdb", "\u{e9}t\u{e9}"), E_INVALID, "{kind}");
        assert_eq!(fs.exists("dump.rdb"), 1, "{kind}");
        // To its own name: nothing happens.
        assert_eq!(fs.rename("dump.rdb", "dump.rdb"), 0, "{kind}");
        assert_eq!(fs.list().unwrap(), "dump.rdb\t3\n", "{kind}");
    });
}

#[test]
fn bad_ids_get_codes() {
    each(|kind, fs| {
        for id in [-1, 0, 5, MAX_OPEN as i64, i64::MAX] {
            assert_eq!(fs.size(id), E_BAD_FILE, "{kind} {id}");
            assert_eq!(fs.read_at(id, 0, &mut [0; 4]), E_BAD_FILE, "{kind} {id}");
            assert_eq!(fs.write_at(id, 0, b"a"), E_BAD_FILE, "{kind} {id}");
            assert_eq!(fs.truncate(id, 0), E_BAD_FILE, "{kind} {id}");
            assert_eq!(fs.sync(id), E_BAD_FILE, "{kind} {id}");
            assert_eq!(fs.close(id), E_BAD_FILE, "{kind} {id}");
        }
        let id = fs.open("f", true);
        assert_eq!(fs.sync(id), 0, "{kind}");
        assert_eq!(fs.close(id), 0, "{kind}");
        assert_eq!(fs.close(id), E_BAD_FILE, "{kind}");
        assert_eq!(fs.sync(id), E_BAD_FILE, "{kind}");
    });
}

#[test]
fn open_ids_are_limited_and_reused() {
    each(|kind, fs| {
        let ids: Vec<i64> = (0..MAX_OPEN).map(|_| fs.open("same", true)).collect();
        assert_eq!(ids, (0..MAX_OPEN as i64).collect::<Vec<_>>(), "{kind}");
        assert_eq!(fs.open("same", true), E_TOO_MANY, "{kind}");
        // With no id free a create still creates the file (FAT does it first).
        assert_eq!(fs.open("late", true), E_TOO_MANY, "{kind}");
        assert_eq!(fs.exists("late"), 1, "{kind}");
        assert_eq!(fs.close(ids[3]), 0, "{kind}");
        assert_eq!(fs.open("same", true), 3, "{kind}");
    });
}

#[test]
fn list_shows_files_in_directory_order_with_sizes() {
    each(|kind, fs| {
        assert_eq!(fs.list().unwrap(), "", "{kind}");
        let a = fs.open("Alpha.txt", true);
        assert_eq!(fs.write_at(a, 0, b"12345"), 5, "{kind}");
        assert_eq!(fs.close(a), 0, "{kind}");
        let b = fs.open("b", true);
        assert_eq!(fs.close(b), 0, "{kind}");
        let c = fs.open("c.db", true);
        assert_eq!(fs.write_at(c, 0, &[1; 4096]), 4096, "{kind}");
        assert_eq!(fs.sync(c), 0, "{kind}");
        assert_eq!(
            fs.list().unwrap(),
            "Alpha.txt\t5\nb\t0\nc.db\t4096\n",
            "{kind}"
        );
        // A new file takes the place of the first one deleted.
        assert_eq!(fs.delete("alpha.txt"), 0, "{kind}");
        let d = fs.open("d", true);
        assert_eq!(fs.close(d), 0, "{kind}");
        assert_eq!(fs.list().unwrap(), "d\t0\nb\t0\nc.db\t4096\n", "{kind}");
    });
}

#[test]
fn names_fat_cannot_store_are_refused_at_creation() {
    each(|kind, fs| {
        // FAT long names are UCS-2: a character beyond U+FFFF cannot be stored.
        assert_eq!(fs.open("smile-\u{1f600}", true), E_INVALID, "{kind}");
        assert_eq!(fs.open("smile-\u{1f600}", false), E_NOT_FOUND, "{kind}");
        assert_eq!(fs.exists("smile-\u{1f600}"), 0, "{kind}");
        assert_eq!(fs.delete("smile-\u{1f600}"), E_NOT_FOUND, "{kind}");
        // Anything else names::check lets through is stored as given.
        for name in [
            "h\u{e9}llo w.txt",
            "a b",
            "x;y=z[1]",
            "~$lock",
            "n".repeat(255).as_str(),
        ] {
            let id = fs.open(name, true);
            assert!(id >= 0, "{kind} {name}: {id}");
            assert_eq!(fs.exists(name), 1, "{kind} {name}");
            assert_eq!(fs.close(id), 0, "{kind} {name}");
            assert_eq!(fs.delete(name), 0, "{kind} {name}");
        }
        // A first character beyond ASCII: lamfat panicked making up its short name.
        assert_eq!(fs.open("\u{e9}t\u{e9}", true), E_INVALID, "{kind}");
        assert_eq!(fs.open("\u{1f600}", true), E_INVALID, "{kind}");
        assert_eq!(fs.exists("\u{e9}t\u{e9}"), 0, "{kind}");
        // Non-ASCII letters do not fold: only ASCII case does, as lamfat compares.
        let id = fs.open("x\u{e9}t\u{e9}", true);
        assert!(id >= 0, "{kind}");
        assert_eq!(fs.exists("X\u{e9}T\u{e9}"), 1, "{kind}");
        assert_eq!(fs.exists("x\u{c9}t\u{e9}"), 0, "{kind}");
    });
}
