//! What only the RAM file system has: its cap, its settings, its copy-once data paths,
//! and one file seen through two ids. (What it shares with the FAT volume is checked
//! against both in vfs_files.rs.)

use flexos_vfs::codes::*;
use flexos_vfs::files::Files;
use flexos_vfs::ramfs::*;

const MIB: u64 = 1 << 20;

#[test]
fn the_cap_bounds_the_sizes_together() {
    let mut fs = RamFs::new(10_000);
    assert_eq!(fs.cap(), 10_000);
    let a = fs.open("a", true);
    let b = fs.open("b", true);
    assert_eq!(fs.write_at(a, 0, &[1; 6000]), 6000);
    assert_eq!(fs.write_at(b, 0, &[2; 4000]), 4000);
    assert_eq!(fs.used(), 10_000);
    // Full: a write or truncate that grows a file fails and changes nothing.
    assert_eq!(fs.write_at(a, 6000, b"x"), E_NO_SPACE);
    assert_eq!(fs.write_at(b, 3999, b"yz"), E_NO_SPACE);
    assert_eq!(fs.write_at(b, 5000, b""), E_NO_SPACE);
    assert_eq!(fs.truncate(a, 6001), E_NO_SPACE);
    assert_eq!((fs.size(a), fs.size(b), fs.used()), (6000, 4000, 10_000));
    let mut buf = [0u8; 2];
    assert_eq!(fs.read_at(b, 3998, &mut buf), 2);
    assert_eq!(buf, [2, 2]);
    // Writes inside a file still work; cutting a file or deleting one frees room.
    assert_eq!(fs.write_at(a, 0, &[3; 6000]), 6000);
    assert_eq!(fs.truncate(a, 1000), 0);
    assert_eq!(fs.used(), 5000);
    assert_eq!(fs.write_at(b, 4000, &[4; 5000]), 5000);
    assert_eq!(fs.used(), 10_000);
    assert_eq!(fs.delete("b"), 0);
    assert_eq!(fs.used(), 1000);
    assert_eq!(fs.write_at(a, 1000, &[5; 9000]), 9000);
    assert_eq!(fs.used(), 10_000);
    assert_eq!(fs.list().unwrap(), "a\t10000\n");
}

#[test]
fn a_zero_cap_holds_only_empty_files() {
    let mut fs = RamFs::new(0);
    let id = fs.open("empty", true);
    assert_eq!(id, 0);
    assert_eq!(fs.write_at(id, 0, b""), 0);
    assert_eq!(fs.write_at(id, 0, b"x"), E_NO_SPACE);
    assert_eq!(fs.truncate(id, 0), 0);
    assert_eq!(fs.truncate(id, 1), E_NO_SPACE);
    assert_eq!(fs.sync(id), 0);
    assert_eq!(fs.list().unwrap(), "empty\t0\n");
}

#[test]
fn a_file_grows_to_the_whole_cap() {
    // Page by page, as SQLite grows a database: the doubling capacity never asks for
    // more than the cap, so the last page fits.
    let mut fs = RamFs::new(MIB);
    let id = fs.open("db", true);
    for page in 0..256u64 {
        assert_eq!(
            fs.write_at(id, page * 4096, &[page as u8; 4096]),
            4096,
            "page {page}"
        );
    }
    assert_eq!(fs.used(), MIB);
    assert_eq!(fs.write_at(id, MIB, b"!"), E_NO_SPACE);
    let mut page = [0u8; 4096];
    assert_eq!(fs.read_at(id, 200 * 4096, &mut page), 4096);
    assert!(page.iter().all(|&b| b == 200));
}

#[test]
fn two_ids_on_one_file_see_each_other_at_once() {
    let mut fs = RamFs::new(MIB);
    let a = fs.open("f", true);
    let b = fs.open("F", false);
    assert_eq!(fs.write_at(a, 0, b"shared"), 6);
    assert_eq!(fs.size(b), 6);
    let mut buf = [0u8; 6];
    assert_eq!(fs.read_at(b, 0, &mut buf), 6);
    assert_eq!(&buf, b"shared");
    assert_eq!(fs.truncate(b, 2), 0);
    assert_eq!(fs.size(a), 2);
    // Closing one leaves the other open.
    assert_eq!(fs.close(a), 0);
    assert_eq!(fs.size(b), 2);
}

#[test]
fn read_with_hands_out_the_file_bytes_once() {
    let mut fs = RamFs::new(MIB);
    let id = fs.open("f", true);
    fs.write_at(id, 0, b"0123456789");
    let mut seen = Vec::new();
    assert_eq!(
        fs.read_with(id, 4, 100, |src| {
            seen.extend_from_slice(src);
            Ok(())
        }),
        6
    );
    assert_eq!(seen, b"456789");
    // At or past the end: 0, and `out` is not called.
    let never = |_: &[u8]| -> Result<(), i64> { panic!("called at the end") };
    assert_eq!(fs.read_with(id, 10, 4, never), 0);
    assert_eq!(fs.read_with(id, u64::MAX, 4, never), 0);
    // `out`'s error is the result; a bad id never reaches `out`.
    assert_eq!(fs.read_with(id, 0, 4, |_| Err(E_BAD_BUFFER)), E_BAD_BUFFER);
    assert_eq!(fs.read_with(3, 0, 4, never), E_BAD_FILE);
}

#[test]
fn write_with_fills_the_file_in_place() {
    let mut fs = RamFs::new(MIB);
    let id = fs.open("f", true);
    assert_eq!(
        fs.write_with(id, 3, 4, |dst| {
            assert_eq!(dst, [0; 4]);
            dst.copy_from_slice(b"abcd");
            Ok(())
        }),
        4
    );
    let mut buf = [9u8; 7];
    assert_eq!(fs.read_at(id, 0, &mut buf), 7);
    assert_eq!(&buf, b"\0\0\0abcd");
    // A failing fill: its code, and the file has grown with zeros (documented).
    assert_eq!(fs.write_with(id, 7, 3, |_| Err(E_BAD_BUFFER)), E_BAD_BUFFER);
    assert_eq!((fs.size(id), fs.used()), (10, 10));
    // Limits come before the id and the fill.
    let never = |_: &mut [u8]| -> Result<(), i64> { panic!("filled") };
    assert_eq!(fs.write_with(5, u64::MAX - 1, 4, never), E_NO_SPACE);
    assert_eq!(fs.write_with(5, 0, 4, never), E_BAD_FILE);
    let mut small = RamFs::new(4);
    let id = small.open("s", true);
    assert_eq!(small.write_with(id, 0, 5, never), E_NO_SPACE);
}

#[test]
fn the_cap_argument_is_whole_mib() {
    assert_eq!(parse_cap("0"), Some(0));
    assert_eq!(parse_cap("1"), Some(MIB));
    assert_eq!(parse_cap("64"), Some(64 * MIB));
    assert_eq!(parse_cap("0064"), Some(64 * MIB));
    assert_eq!(parse_cap(&MAX_CAP_MIB.to_string()), Some(MAX_CAP_MIB * MIB));
    for bad in [
        "",
        "-1",
        "+1",
        "1.5",
        "64M",
        " 1",
        "1 ",
        "0x10",
        "1048577",
        "99999999999999999999999",
    ] {
        assert_eq!(parse_cap(bad), None, "{bad:?}");
    }
}

#[test]
fn the_default_cap_is_half_the_heap_in_whole_mib() {
    assert_eq!(default_cap(58 * MIB + 12_345), 29 * MIB);
    assert_eq!(default_cap(59 * MIB), 29 * MIB);
    assert_eq!(default_cap(2 * MIB), MIB);
    assert_eq!(default_cap(MIB), 0);
}
