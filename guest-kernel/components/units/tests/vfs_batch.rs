//! The write list of `fs::write_batch`.

use flexos_vfs::batch::*;
use flexos_vfs::codes::E_INVALID;

fn raw(entries: &[Entry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.encode()).collect()
}

#[test]
fn entries_round_trip_and_check_against_the_data() {
    let list = [
        Entry {
            file: 1,
            len: 4096,
            offset: 0,
        },
        Entry {
            file: 0,
            len: 28,
            offset: 1 << 40,
        },
    ];
    assert_eq!(parse(&raw(&list), 4124), Ok(list.to_vec()));
    // The data buffer must hold every entry's bytes.
    assert_eq!(parse(&raw(&list), 4123), Err(E_INVALID));
    assert_eq!(parse(&[], 0), Ok(vec![]));
    // A torn entry, an offset no signed offset holds, an end past u64.
    assert_eq!(parse(&raw(&list)[..20], 1 << 20), Err(E_INVALID));
    let far = Entry {
        file: 0,
        len: 1,
        offset: 1 << 63,
    };
    assert_eq!(parse(&raw(&[far]), 1), Err(E_INVALID));
    let wrap = Entry {
        file: 0,
        len: 2,
        offset: u64::MAX - 1,
    };
    assert_eq!(parse(&raw(&[wrap]), 2), Err(E_INVALID));
    let end = Entry {
        file: 0,
        len: 16,
        offset: i64::MAX as u64,
    };
    assert_eq!(parse(&raw(&[end]), 16), Ok(vec![end]));
}

#[test]
fn a_write_that_continues_the_last_one_merges() {
    let mut list = Vec::new();
    push(&mut list, 1, 4096, 4);
    push(&mut list, 1, 4100, 4096);
    push(&mut list, 1, 8196, 4);
    // Another file, or a gap, starts a new entry.
    push(&mut list, 0, 8200, 10);
    push(&mut list, 0, 9000, 10);
    assert_eq!(
        list,
        vec![
            Entry {
                file: 1,
                len: 4104,
                offset: 4096
            },
            Entry {
                file: 0,
                len: 10,
                offset: 8200
            },
            Entry {
                file: 0,
                len: 10,
                offset: 9000
            },
        ]
    );
}

#[test]
fn check_and_entries_walk_the_list_without_a_vector() {
    let list = [
        Entry {
            file: 2,
            len: 100,
            offset: 7,
        },
        Entry {
            file: 0,
            len: 28,
            offset: 0,
        },
    ];
    let bytes = raw(&list);
    assert_eq!(check(&bytes, 128), Ok(128));
    assert_eq!(check(&bytes, 200), Ok(128));
    assert_eq!(check(&bytes, 127), Err(E_INVALID));
    assert_eq!(check(&bytes[..20], 128), Err(E_INVALID));
    assert_eq!(check(&[], 0), Ok(0));
    assert_eq!(entries(&bytes).collect::<Vec<_>>(), list);
    // A trailing partial entry is left out (check refuses the list).
    assert_eq!(entries(&bytes[..20]).collect::<Vec<_>>(), list[..1]);
    let mut signed = list;
    signed[1].offset = 1 << 63;
    assert_eq!(check(&raw(&signed), 128), Err(E_INVALID));
}
