//! `sqlite`: SQLite 3 in a FlexOS image.
//!
//! The amalgamation is compiled freestanding by `libsqlite3-sys` (flags in
//! `guest-kernel/.cargo/config.toml`); its OS layer is ours: [`vfs`] over a
//! [`storage::Storage`], for now [`storage::mem::MemStorage`] in this compartment's
//! heap. The database file is `bench.db`.
//!
//! ```text
//! sqlite bench [n=N] [journal=delete|wal]   the FlexOS Figure 10 insert workload
//! sqlite sql="STATEMENTS"                   run statements, print rows (a|b|c)
//! ```
//!
//! Both may be given (the bench runs first, on the same connection). Every connection
//! uses `PRAGMA locking_mode=EXCLUSIVE` (no shared-memory methods needed for WAL, and
//! no lock/unlock traffic per transaction). An SQL error prints `error: <message>` and
//! exits 1; a bad argument prints what is wrong and the usage line and exits 2.

#![no_std]
#![no_main]

extern crate alloc;
// Linked for the C functions SQLite calls (str*, memchr, malloc/free/realloc); nothing
// in Rust names it, so without this the linker would never see it.
extern crate tinyrlibc;

mod bench;
mod cli;
mod db;
mod sql;
mod storage;
mod vfs;

use alloc::boxed::Box;
use core::ffi::c_int;

use flexos_kernel::{Args, println};
use libsqlite3_sys::{SQLITE_OK, sqlite3_initialize};

use cli::{Command, Journal, USAGE};
use db::{Db, SqlError};
use storage::mem::MemStorage;

flexos_kernel::main!(main);

// One component for now; the file system and block driver become their own later.
flexos_kernel::components! {
    components: [APP = "app"],
    splits: [[("app", ["app"])]],
}

/// Exit code for an SQL error.
const EXIT_SQL: i32 = 1;
/// Exit code for bad arguments.
const EXIT_USAGE: i32 = 2;

/// The database file every run opens.
const DB_NAME: &core::ffi::CStr = c"bench.db";

fn main(args: &Args) -> i32 {
    let command = match Command::parse(args) {
        Ok(command) => command,
        Err(problem) => {
            println!("{problem}");
            println!("{USAGE}");
            return EXIT_USAGE;
        }
    };

    vfs::install(Box::new(MemStorage::new()));
    // SQLITE_OMIT_AUTOINIT: nothing works before this; it calls sqlite3_os_init.
    // SAFETY: called once, before any other SQLite call, on the only thread.
    let rc = unsafe { sqlite3_initialize() };
    if rc != SQLITE_OK {
        println!("error: sqlite3_initialize failed with code {rc}");
        return EXIT_SQL;
    }

    match run(&command) {
        Ok(()) => 0,
        Err(err) => {
            println!("error: {err}");
            EXIT_SQL
        }
    }
}

/// Opens the database and runs what `command` asks for.
fn run(command: &Command) -> Result<(), SqlError> {
    let db = Db::open(DB_NAME)?;
    db.run("PRAGMA locking_mode=EXCLUSIVE", |_| {})?;
    let journal = command.journal.unwrap_or(Journal::Delete);
    if command.journal.is_some() || command.bench.is_some() {
        let set = alloc::format!("PRAGMA journal_mode={}", journal.name());
        let now = db.query_one(&set)?;
        if now != journal.name() {
            return Err(SqlError {
                code: libsqlite3_sys::SQLITE_ERROR,
                message: alloc::format!("journal_mode is {now}, not {}", journal.name()),
            });
        }
    }
    if let Some(inserts) = command.bench {
        bench::run(&db, inserts, journal)?;
    }
    if let Some(text) = command.sql {
        sql::run(&db, text)?;
    }
    Ok(())
}

/// SQLite's OS-layer entry (SQLITE_OS_OTHER): registers our VFS as the default.
#[unsafe(no_mangle)]
pub extern "C" fn sqlite3_os_init() -> c_int {
    vfs::register()
}

/// SQLite's OS-layer exit (from sqlite3_shutdown).
#[unsafe(no_mangle)]
pub extern "C" fn sqlite3_os_end() -> c_int {
    vfs::unregister()
}
