//! FAT timestamps from the host's clock (vfs::clock): Unix time to FAT date and time
//! at FAT's 2-second resolution, checked against a plain day-by-day count, and the
//! range ends.

use flexos_vfs::clock::{Clock, fat_time};

const NS: u64 = 1_000_000_000;

/// (year, month, day, hour, min, sec, millis) of a FAT date-time.
fn parts(unix_ns: u64) -> (u16, u16, u16, u16, u16, u16, u16) {
    let t = fat_time(unix_ns);
    (
        t.date.year,
        t.date.month,
        t.date.day,
        t.time.hour,
        t.time.min,
        t.time.sec,
        t.time.millis,
    )
}

fn leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

/// The date of day `days` since 1970-01-01, counted a day at a time.
fn naive_date(mut days: u64) -> (u16, u16, u16) {
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let lens = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= lens[month] {
        days -= lens[month];
        month += 1;
    }
    (year as u16, month as u16 + 1, days as u16 + 1)
}

#[test]
fn known_instants() {
    // date -u -d @1709213862 : Thu Feb 29 13:37:42 UTC 2024
    assert_eq!(
        parts(1_709_213_862 * NS + 500_000_000),
        (2024, 2, 29, 13, 37, 42, 0)
    );
    // Odd seconds round down: FAT stores modification times in 2-second steps.
    assert_eq!(
        parts(1_709_213_863 * NS + 999_999_999),
        (2024, 2, 29, 13, 37, 42, 0)
    );
    // FAT's first instant, and 2000-03-01 (after the 400-year leap day).
    assert_eq!(parts(315_532_800 * NS), (1980, 1, 1, 0, 0, 0, 0));
    assert_eq!(parts(951_868_800 * NS), (2000, 3, 1, 0, 0, 0, 0));
    assert_eq!(parts(951_868_799 * NS), (2000, 2, 29, 23, 59, 58, 0));
}

#[test]
fn every_day_of_fats_range_matches_a_day_count() {
    let first = 315_532_800 / 86_400;
    let end = 4_354_819_200 / 86_400;
    for day in first..end {
        let (y, m, d) = naive_date(day);
        let at = (day * 86_400 + 86_399) * NS;
        assert_eq!(parts(at), (y, m, d, 23, 59, 58, 0), "day {day}");
    }
}

#[test]
fn times_outside_fats_range_are_clamped_and_unknown_is_1980() {
    assert_eq!(parts(0), (1980, 1, 1, 0, 0, 0, 0), "unknown");
    assert_eq!(parts(100 * NS), (1980, 1, 1, 0, 0, 0, 0), "1970");
    assert_eq!(parts(u64::MAX), (2107, 12, 31, 23, 59, 58, 0));
    assert_eq!(Clock::UNKNOWN.now(), fat_time(0));
    fn fixed() -> u64 {
        1_709_213_862 * NS
    }
    assert_eq!(Clock::new(fixed).now(), fat_time(fixed()));
}
