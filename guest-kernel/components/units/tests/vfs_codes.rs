//! The fs interface's error codes.

use flexos_vfs::codes::*;

#[test]
fn codes_are_distinct_negative_and_described() {
    let all = [
        E_NOT_FOUND,
        E_IO,
        E_BAD_FILE,
        E_BAD_BUFFER,
        E_BUSY,
        E_NO_DISK,
        E_INVALID,
        E_TOO_MANY,
        E_NO_SPACE,
        E_READ_ONLY,
        E_NOT_FAT,
    ];
    for (i, a) in all.iter().enumerate() {
        assert!(*a < 0);
        assert_ne!(describe(*a), "unknown error", "code {a}");
        assert!(all[i + 1..].iter().all(|b| b != a), "code {a} twice");
    }
}
