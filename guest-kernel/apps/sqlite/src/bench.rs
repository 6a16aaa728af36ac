//! The FlexOS Figure 10 workload: autocommit INSERTs through one prepared statement.

use flexos_kernel::{boot_info, gate, println, time};

use crate::cli::Journal;
use crate::db::{Db, SqlError};

/// Rows between two `committed N` lines.
const PROGRESS_EVERY: u32 = 500;

/// Creates `tab` afresh (dropping the one an earlier run on the same database left, so
/// the bench can be run again) and inserts `inserts` rows, each its own transaction;
/// prints a `committed N` line every [`PROGRESS_EVERY`] rows and after the last, then
/// the JSON result line. The time covers the inserts (and the progress lines, ~26 us
/// each), not the drop.
pub fn run(db: &Db, inserts: u32, journal: Journal) -> Result<(), SqlError> {
    db.run("DROP TABLE IF EXISTS tab", |_| {})?;
    db.run(
        "CREATE TABLE tab(id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
        |_| {},
    )?;
    let (Some(mut stmt), _) = db.prepare("INSERT INTO tab VALUES (null,'value')")? else {
        unreachable!("an INSERT compiles to a statement");
    };

    let before = gate::endpoint().stats();
    let start = time::now_ns();
    for row in 1..=inserts {
        stmt.step()?;
        stmt.reset()?;
        if row % PROGRESS_EVERY == 0 || row == inserts {
            // Autocommit: the row's transaction has committed when step returned.
            println!("committed {row}");
        }
    }
    let ns = time::now_ns().saturating_sub(start);
    let after = gate::endpoint().stats();

    // The app's own cross-compartment calls and sleeps during the inserts: where the
    // time of a split placement goes (calls to a co-located component are direct and
    // not counted).
    println!(
        "{{\"bench\":\"sqlite\",\"compartments\":{},\"inserts\":{inserts},\"journal\":\"{}\",\"seconds\":{}.{:06},\"gate_calls\":{},\"gate_sleeps\":{}}}",
        boot_info().compartment_count,
        journal.name(),
        ns / 1_000_000_000,
        ns % 1_000_000_000 / 1000,
        after.calls - before.calls,
        after.sleeps - before.sleeps,
    );
    Ok(())
}
