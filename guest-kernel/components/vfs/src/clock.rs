//! FAT timestamps from the host's clock.
//!
//! The monitor passes its wall clock in the boot info (`wall_clock_ns`, read together
//! with the TSC value the guest's time counts from), so "now" in a guest is that plus
//! the time since start: the server hands [`Clock`] a function computing it, and lamfat
//! stamps files it creates and modifies through it. FAT has no time zone: the times
//! written are UTC (the host's `mdir` shows them as they are). A clock that reads 0
//! (unknown) gives FAT's earliest time, 1980-01-01 00:00:00, a valid date rather than
//! the 1980-00-00 an all-zero field shows; times outside FAT's range (1980..=2107) are
//! clamped to its ends.
//!
//! The time is given at FAT's resolution for modification times, 2 seconds (and no
//! milliseconds): lamfat rewrites a file's directory entry on a sync only when the
//! time it would store differs from the one stored, so a finer clock would dirty the
//! entry on every write, and a database's every commit would write the directory
//! (behind a cache barrier: a second device flush). Measured with `sqlite.elf --
//! bench` in 1 compartment: a millisecond clock made the bench 2-15x slower; at 2
//! seconds an entry is rewritten at most once per 2 seconds of writing.
//!
//! Plain Rust, tested on the host.

use core::fmt;

use lamfat::{Date, DateTime, Time, TimeProvider};

/// Wall-clock time for lamfat: `now()` is nanoseconds since 1970-01-01 00:00 UTC, or 0
/// when unknown.
#[derive(Clone, Copy)]
pub struct Clock {
    now: fn() -> u64,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({:?})", fat_time((self.now)()))
    }
}

const fn unknown() -> u64 {
    0
}

impl Clock {
    /// No clock: every timestamp is 1980-01-01 00:00:00.
    pub const UNKNOWN: Clock = Clock { now: unknown };

    /// A clock reading `now`.
    pub const fn new(now: fn() -> u64) -> Clock {
        Clock { now }
    }

    /// The FAT date and time now.
    pub fn now(&self) -> DateTime {
        fat_time((self.now)())
    }
}

impl TimeProvider for Clock {
    fn get_current_date(&self) -> Date {
        self.now().date
    }

    fn get_current_date_time(&self) -> DateTime {
        self.now()
    }
}

/// Seconds from 1970-01-01 to 1980-01-01 and to 2108-01-01 (FAT's range).
const FAT_FIRST: u64 = 315_532_800;
const FAT_END: u64 = 4_354_819_200;

/// The FAT date and time (UTC) of `unix_ns` nanoseconds since the Unix epoch, clamped
/// to FAT's range, at FAT's 2-second resolution (see the module docs).
pub fn fat_time(unix_ns: u64) -> DateTime {
    let secs = (unix_ns / 1_000_000_000).clamp(FAT_FIRST, FAT_END - 1) & !1;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    DateTime::new(
        Date::new(year, month, day),
        Time::new(
            (in_day / 3600) as u16,
            (in_day % 3600 / 60) as u16,
            (in_day % 60) as u16,
            0,
        ),
    )
}

/// The (year, month, day) of day `days` since 1970-01-01 (proleptic Gregorian), after
/// Howard Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u16, u16, u16) {
    // Days since 0000-03-01, so each 400-year era starts on a March 1st and leap days
    // fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u16, month as u16, day as u16)
}
