//! The blk interface's request checks.

use flexos_blkdev::request::*;

#[test]
fn lengths_must_be_whole_sectors() {
    assert_eq!(check_transfer(100, 0, 0), Err(E_LENGTH));
    assert_eq!(check_transfer(100, 0, 511), Err(E_LENGTH));
    assert_eq!(check_transfer(100, 0, 513), Err(E_LENGTH));
    assert_eq!(check_transfer(100, 0, 512), Ok(1));
    assert_eq!(check_transfer(100, 0, 4096), Ok(8));
}

#[test]
fn requests_stay_on_the_disk() {
    assert_eq!(check_transfer(100, 99, 512), Ok(1));
    assert_eq!(check_transfer(100, 99, 1024), Err(E_RANGE));
    assert_eq!(check_transfer(100, 100, 512), Err(E_RANGE));
    assert_eq!(check_transfer(100, u64::MAX, 512), Err(E_RANGE));
    assert_eq!(check_transfer(0, 0, 512), Err(E_RANGE));
}

#[test]
fn every_code_has_a_description() {
    for code in [
        E_NO_DEVICE,
        E_IO,
        E_LENGTH,
        E_RANGE,
        E_READ_ONLY,
        E_BAD_BUFFER,
        E_NO_MEMORY,
        E_BUSY,
    ] {
        assert_ne!(describe(code), "unknown error", "code {code}");
    }
    assert_eq!(describe(-1000), "unknown error");
}
