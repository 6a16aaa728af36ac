//! The guest arguments: what a run is asked to do.

use core::fmt;

use flexos_kernel::Args;
use flexos_vfs::ramfs::{CAP_KEY, RAMFS_ARG, parse_cap};

/// The line printed after any argument problem.
pub const USAGE: &str = "usage: sqlite [bench [n=N]] [journal=delete|wal] [sql=\"STATEMENTS\"] \
     [mem | [db=NAME] [ramfs [vfs.ramfs=MiB]]]";

/// The database file on the disk unless `db=` names another.
pub const DEFAULT_DB: &str = "bench.db";

/// Rows the bench inserts unless `n=` says otherwise (FlexOS Figure 10).
pub const DEFAULT_INSERTS: u32 = 5000;

/// SQLite's journal modes the app supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Journal {
    Delete,
    Wal,
}

impl Journal {
    /// The mode's name as `PRAGMA journal_mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Journal::Delete => "delete",
            Journal::Wal => "wal",
        }
    }
}

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    /// `bench`: how many rows to insert.
    pub bench: Option<u32>,
    /// `journal=`: the journal mode to set (SQLite's default, DELETE, if absent).
    pub journal: Option<Journal>,
    /// `sql=`: statements to run after the bench, if any.
    pub sql: Option<&'static str>,
    /// The database file's name (`db=`, else [`DEFAULT_DB`]).
    pub db: &'static str,
    /// `mem`: the database lives in this compartment's heap, not on the disk.
    pub mem: bool,
    /// `ramfs`: the vfs component serves the files from its RAM file system (it reads
    /// the argument itself, and `vfs.ramfs=MiB`), not from the disk.
    pub ramfs: bool,
}

/// Why the arguments were rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    Unknown(&'static str),
    BadCount(&'static str),
    BadJournal(&'static str),
    SqlTwice,
    BadDbName(&'static str),
    DbWithMem,
    RamfsWithMem,
    BadRamfsSize(&'static str),
    SizeWithoutRamfs,
    CountWithoutBench,
    NothingToDo,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Unknown(arg) => write!(f, "sqlite: unknown argument '{arg}'"),
            UsageError::BadCount(n) => {
                write!(f, "sqlite: bad row count '{n}' (want 1..={})", u32::MAX)
            }
            UsageError::BadJournal(mode) => {
                write!(f, "sqlite: bad journal mode '{mode}' (want delete|wal)")
            }
            UsageError::SqlTwice => f.write_str("sqlite: sql= given twice"),
            UsageError::BadDbName(name) => write!(f, "sqlite: bad database name '{name}'"),
            UsageError::DbWithMem => f.write_str("sqlite: db= and mem exclude each other"),
            UsageError::RamfsWithMem => f.write_str("sqlite: ramfs and mem exclude each other"),
            UsageError::BadRamfsSize(size) => {
                write!(f, "sqlite: bad {CAP_KEY} size '{size}' (want MiB)")
            }
            UsageError::SizeWithoutRamfs => write!(f, "sqlite: {CAP_KEY}= needs ramfs"),
            UsageError::CountWithoutBench => f.write_str("sqlite: n= needs bench"),
            UsageError::NothingToDo => f.write_str("sqlite: nothing to do"),
        }
    }
}

impl Command {
    /// Parses the guest arguments.
    pub fn parse(args: &Args) -> Result<Command, UsageError> {
        let mut bench = false;
        let mut inserts = None;
        let mut journal = None;
        let mut sql = None;
        let mut db = None;
        let mut mem = false;
        let mut ramfs = false;
        let mut cap = false;
        for arg in args {
            if arg == "bench" {
                bench = true;
            } else if arg == "mem" {
                mem = true;
            } else if arg == RAMFS_ARG {
                ramfs = true;
            } else if let Some(size) = arg
                .strip_prefix(CAP_KEY)
                .and_then(|rest| rest.strip_prefix('='))
            {
                // The vfs component reads it; checked here so a typo is a usage error.
                if parse_cap(size).is_none() {
                    return Err(UsageError::BadRamfsSize(size));
                }
                cap = true;
            } else if let Some(name) = arg.strip_prefix("db=") {
                // One flat name: no directories, no NUL for the C string.
                if name.is_empty() || name.contains(['/', '\\', '\0']) {
                    return Err(UsageError::BadDbName(name));
                }
                db = Some(name);
            } else if let Some(n) = arg.strip_prefix("n=") {
                match n.parse::<u32>() {
                    Ok(count) if count > 0 && !n.starts_with('+') => inserts = Some(count),
                    _ => return Err(UsageError::BadCount(n)),
                }
            } else if let Some(mode) = arg.strip_prefix("journal=") {
                journal = Some(match mode {
                    "delete" => Journal::Delete,
                    "wal" => Journal::Wal,
                    _ => return Err(UsageError::BadJournal(mode)),
                });
            } else if let Some(text) = arg.strip_prefix("sql=") {
                if sql.replace(text).is_some() {
                    return Err(UsageError::SqlTwice);
                }
            } else {
                return Err(UsageError::Unknown(arg));
            }
        }
        if mem && db.is_some() {
            return Err(UsageError::DbWithMem);
        }
        if mem && ramfs {
            return Err(UsageError::RamfsWithMem);
        }
        if cap && !ramfs {
            return Err(UsageError::SizeWithoutRamfs);
        }
        if inserts.is_some() && !bench {
            return Err(UsageError::CountWithoutBench);
        }
        if !bench && sql.is_none() {
            return Err(UsageError::NothingToDo);
        }
        Ok(Command {
            bench: bench.then(|| inserts.unwrap_or(DEFAULT_INSERTS)),
            journal,
            sql,
            db: db.unwrap_or(DEFAULT_DB),
            mem,
            ramfs,
        })
    }
}
