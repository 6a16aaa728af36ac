//! A small safe layer over the SQLite C API: a connection, prepared statements, and
//! errors that carry SQLite's own message.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{CStr, c_char, c_int};
use core::fmt;
use core::ptr;

use libsqlite3_sys::{
    SQLITE_DONE, SQLITE_OK, SQLITE_OPEN_CREATE, SQLITE_OPEN_READWRITE, SQLITE_ROW, sqlite3,
    sqlite3_close, sqlite3_column_bytes, sqlite3_column_count, sqlite3_column_text, sqlite3_errmsg,
    sqlite3_errstr, sqlite3_finalize, sqlite3_open_v2, sqlite3_prepare_v2, sqlite3_reset,
    sqlite3_step, sqlite3_stmt,
};

/// A failed SQLite call: its result code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: c_int,
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Copies a C string SQLite owns (null reads as empty).
///
/// # Safety
///
/// `text` is null or NUL-terminated and valid for the call.
unsafe fn c_text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: per the caller.
    String::from_utf8_lossy(unsafe { CStr::from_ptr(text) }.to_bytes()).into_owned()
}

/// An open database connection.
pub struct Db {
    raw: *mut sqlite3,
}

impl Db {
    /// Opens (creating if needed) the database file `name` through the default VFS.
    pub fn open(name: &CStr) -> Result<Db, SqlError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `raw` receives the handle (or null on OOM).
        let rc = unsafe {
            sqlite3_open_v2(
                name.as_ptr(),
                &mut raw,
                SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                ptr::null(),
            )
        };
        let db = Db { raw };
        if rc != SQLITE_OK {
            return Err(db.error(rc));
        }
        Ok(db)
    }

    /// The error SQLite recorded for the last failed call on this connection.
    fn error(&self, code: c_int) -> SqlError {
        let message = if self.raw.is_null() {
            // SAFETY: sqlite3_errstr returns a static string for any code.
            unsafe { c_text(sqlite3_errstr(code)) }
        } else {
            // SAFETY: the connection is open; the message stays valid until the next
            // call on it, and we copy it at once.
            unsafe { c_text(sqlite3_errmsg(self.raw)) }
        };
        SqlError { code, message }
    }

    /// Compiles the first statement of `sql`; returns it (None if that part held only
    /// spaces or comments) and the rest of `sql` after it.
    pub fn prepare<'a>(&self, sql: &'a str) -> Result<(Option<Stmt<'_>>, &'a str), SqlError> {
        let len = c_int::try_from(sql.len()).map_err(|_| SqlError {
            code: libsqlite3_sys::SQLITE_TOOBIG,
            message: String::from("statement too long"),
        })?;
        let mut raw = ptr::null_mut();
        let mut tail: *const c_char = ptr::null();
        // SAFETY: `sql` is valid for `len` bytes (no NUL needed when the length is
        // given); SQLite sets `tail` to a pointer inside it.
        let rc =
            unsafe { sqlite3_prepare_v2(self.raw, sql.as_ptr().cast(), len, &mut raw, &mut tail) };
        if rc != SQLITE_OK {
            return Err(self.error(rc));
        }
        let used = if tail.is_null() {
            sql.len()
        } else {
            (tail as usize).saturating_sub(sql.as_ptr() as usize)
        };
        // SQLite stops right after a statement's ';' or at the end, both char
        // boundaries; fall back to "nothing left" if it ever did not.
        let rest = sql.get(used..).unwrap_or("");
        let stmt = (!raw.is_null()).then_some(Stmt { raw, db: self });
        Ok((stmt, rest))
    }

    /// Runs every statement in `sql`, calling `row` with each result row's columns.
    pub fn run(&self, mut sql: &str, mut row: impl FnMut(&[&str])) -> Result<(), SqlError> {
        while !sql.is_empty() {
            let (stmt, rest) = self.prepare(sql)?;
            if stmt.is_none() && rest.len() >= sql.len() {
                // Nothing compiled and nothing consumed: only a stop would follow.
                break;
            }
            sql = rest;
            let Some(mut stmt) = stmt else { continue };
            while stmt.step()? {
                let columns = stmt.columns();
                let texts: Vec<&str> = columns.iter().map(String::as_str).collect();
                row(&texts);
            }
        }
        Ok(())
    }

    /// The single text value `sql` returns (e.g. a PRAGMA's answer).
    pub fn query_one(&self, sql: &str) -> Result<String, SqlError> {
        let mut answer = String::new();
        self.run(sql, |cols| {
            if let Some(first) = cols.first() {
                answer = String::from(*first);
            }
        })?;
        Ok(answer)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: the handle came from sqlite3_open_v2 (null is allowed); every Stmt
        // borrows the Db, so all are finalized by now.
        unsafe { sqlite3_close(self.raw) };
    }
}

/// A prepared statement of a [`Db`].
pub struct Stmt<'db> {
    raw: *mut sqlite3_stmt,
    db: &'db Db,
}

impl Stmt<'_> {
    /// Runs the statement to its next row: true if there is one, false when done.
    pub fn step(&mut self) -> Result<bool, SqlError> {
        // SAFETY: a live statement of an open connection.
        match unsafe { sqlite3_step(self.raw) } {
            SQLITE_ROW => Ok(true),
            SQLITE_DONE => Ok(false),
            rc => Err(self.db.error(rc)),
        }
    }

    /// Rewinds the statement so it can run again.
    pub fn reset(&mut self) -> Result<(), SqlError> {
        // SAFETY: a live statement.
        match unsafe { sqlite3_reset(self.raw) } {
            SQLITE_OK => Ok(()),
            rc => Err(self.db.error(rc)),
        }
    }

    /// The current row's columns as text, as the sqlite3 shell shows them (NULL as
    /// an empty string).
    pub fn columns(&self) -> Vec<String> {
        // SAFETY: a live statement positioned on a row.
        let count = unsafe { sqlite3_column_count(self.raw) };
        (0..count)
            .map(|i| {
                // SAFETY: `i` is a valid column; the text (or null for NULL) stays
                // valid until the next step, and we copy its `bytes` bytes at once.
                unsafe {
                    let text = sqlite3_column_text(self.raw, i);
                    let len = usize::try_from(sqlite3_column_bytes(self.raw, i)).unwrap_or(0);
                    if text.is_null() {
                        String::new()
                    } else {
                        let bytes = core::slice::from_raw_parts(text, len);
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                }
            })
            .collect()
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement came from sqlite3_prepare_v2 and is finalized once.
        unsafe { sqlite3_finalize(self.raw) };
    }
}
