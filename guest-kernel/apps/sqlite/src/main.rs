//! `sqlite`: SQLite 3 in a FlexOS image.
//!
//! The amalgamation is compiled freestanding by `libsqlite3-sys` (flags in
//! `guest-kernel/.cargo/config.toml`); its OS layer is ours: [`vfs`] over a
//! [`storage::Storage`]: by default [`storage::gate::GateStorage`], the disk's FAT volume
//! through the `vfs` and `blkdev` components (`--disk IMAGE` on the monitor), or with
//! the guest argument `ramfs` the vfs component's RAM file system (no disk; its size
//! `vfs.ramfs=MiB`, full is SQLITE_FULL); with `mem`, [`storage::mem::MemStorage`] in
//! this compartment's heap (no vfs at all). The database file is `bench.db` unless
//! `db=NAME` names another.
//!
//! ```text
//! sqlite bench [n=N] [journal=delete|wal]   the FlexOS Figure 10 insert workload
//!                                           (on a fresh table `tab`, every run)
//! sqlite sql="STATEMENTS"                   run statements, print rows (a|b|c)
//! ```
//!
//! Without a disk the run prints how to attach one and exits 1; a disk that holds no
//! FAT volume exits 1 after the vfs component's message. Splits ([`flexos_vfs::app!`],
//! the prologue shared with fscheck): 1 = everything; 2 = {app} | {vfs, blkdev};
//! 3 = {app} | {vfs} | {blkdev}. With `ramfs`, 2 is {app} | {vfs on RAM}: FlexOS's EPT2
//! configuration of its Figure 10.
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
use alloc::ffi::CString;
use core::ffi::c_int;

use flexos_kernel::{Args, println};
use flexos_vfs::codes::E_NO_DISK;
use libsqlite3_sys::{SQLITE_OK, sqlite3_initialize};

use cli::{Command, Journal, USAGE};
use db::{Db, SqlError};
use storage::Storage;
use storage::gate::GateStorage;
use storage::mem::MemStorage;

flexos_kernel::main!(main);
flexos_vfs::app!();

/// Exit code for an SQL error or an unusable disk.
const EXIT_SQL: i32 = 1;
/// Exit code for bad arguments.
const EXIT_USAGE: i32 = 2;

/// What a run without a disk prints.
const NO_DISK: &str = "sqlite: no disk: run flexos-vmm with --disk IMAGE (scripts/mkdisk makes one), or pass ramfs or mem";

/// The storage `command` asks for: the heap with `mem`, else the vfs component (the
/// disk, or its RAM file system with `ramfs`), checked here so that a missing or
/// unusable disk is one clear message, not an SQLite "unable to open database file".
fn storage(command: &Command) -> Result<Box<dyn Storage + Send>, ()> {
    if command.mem {
        return Ok(Box::new(MemStorage::new()));
    }
    match GateStorage::connect(files(), VFS, command.db) {
        Ok(storage) => Ok(Box::new(storage)),
        Err(err) if err.0 == E_NO_DISK => {
            println!("{NO_DISK}");
            Err(())
        }
        // Not FAT or corrupt: the vfs component has already said why on the console.
        Err(err) if err.0 == flexos_vfs::codes::E_NOT_FAT => Err(()),
        Err(err) if err.0 == flexos_vfs::codes::E_INVALID => {
            println!("sqlite: bad database name '{}': {err}", command.db);
            Err(())
        }
        Err(err) => {
            let what = if command.ramfs {
                "the RAM file system"
            } else {
                "the disk"
            };
            println!("sqlite: {what} is unusable: {err}");
            Err(())
        }
    }
}

fn main(args: &Args) -> i32 {
    let command = match Command::parse(args) {
        Ok(command) => command,
        Err(problem) => {
            println!("{problem}");
            println!("{USAGE}");
            return EXIT_USAGE;
        }
    };

    let Ok(storage) = storage(&command) else {
        return EXIT_SQL;
    };
    vfs::install(storage);
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
    // The parser refuses a name with a NUL, so this cannot fail.
    let name = CString::new(command.db).map_err(|_| SqlError {
        code: libsqlite3_sys::SQLITE_MISUSE,
        message: alloc::format!("bad database name {:?}", command.db),
    })?;
    let db = Db::open(&name)?;
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
