//! `sql="..."`: runs statements and prints their rows like the sqlite3 shell's default
//! list mode (columns joined by `|`, NULL as nothing).

use alloc::string::String;

use flexos_kernel::println;

use crate::db::{Db, SqlError};

/// Runs every statement in `sql` in order; stops at the first error.
pub fn run(db: &Db, sql: &str) -> Result<(), SqlError> {
    let mut line = String::new();
    db.run(sql, |columns| {
        line.clear();
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                line.push('|');
            }
            line.push_str(column);
        }
        println!("{line}");
    })
}
