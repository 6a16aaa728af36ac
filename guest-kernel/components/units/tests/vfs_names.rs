//! File names and offsets from the gate.

use flexos_vfs::names::*;

#[test]
fn ordinary_and_long_names_pass() {
    assert_eq!(check(b"bench.db"), Ok("bench.db"));
    assert_eq!(check(b"bench.db-journal"), Ok("bench.db-journal"));
    assert_eq!(check("h\u{e9}llo w.txt".as_bytes()), Ok("h\u{e9}llo w.txt"));
    assert_eq!(check(&[b'a'; MAX_NAME]).map(str::len), Ok(MAX_NAME));
}

#[test]
fn bad_names_are_refused() {
    assert_eq!(check(b""), Err(BadName::Empty));
    assert_eq!(check(&[b'a'; MAX_NAME + 1]), Err(BadName::TooLong));
    assert_eq!(check(&[0xff, 0xfe]), Err(BadName::NotUtf8));
    assert_eq!(check(b"dir/x"), Err(BadName::Character('/')));
    assert_eq!(check(b"a\\b"), Err(BadName::Character('\\')));
    assert_eq!(check(b"a\nb"), Err(BadName::Character('\n')));
    assert_eq!(check(b"a\0"), Err(BadName::Character('\0')));
    assert_eq!(check(b"what?"), Err(BadName::Character('?')));
    assert_eq!(check(b"."), Err(BadName::Reserved));
    assert_eq!(check(b".."), Err(BadName::Reserved));
    assert_eq!(check(b" . "), Err(BadName::Reserved));
}

#[test]
fn negative_offsets_are_refused() {
    assert_eq!(offset(0), Some(0));
    assert_eq!(offset(i64::MAX), Some(i64::MAX as u64));
    assert_eq!(offset(-1), None);
}

#[test]
fn creatable_names_start_ascii_and_stay_in_ucs2() {
    assert!(creatable("bench.db"));
    assert!(creatable("x\u{e9}t\u{e9}"));
    assert!(creatable("a\u{ffff}"));
    assert!(!creatable("\u{e9}t\u{e9}"));
    assert!(!creatable("a\u{10000}"));
    assert!(!creatable("\u{1f600}.txt"));
    assert!(!creatable(""));
}
