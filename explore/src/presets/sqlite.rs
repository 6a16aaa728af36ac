//! `flexos-bench sqlite`: SQLite in the style of FlexOS Figure 10.
//!
//! For each journal mode (DELETE, then WAL; synchronous FULL on both sides), in REPS
//! interleaved rounds:
//!   - the host baseline: the system's libsqlite3 through Python's sqlite3 module, ONE
//!     prepared statement stepped N times in autocommit mode, timed around the insert
//!     loop only (the guest also steps one prepared statement);
//!   - the host's stock sqlite3 CLI fed the SQL script, timed around the process (it
//!     parses every line and pays process start-up: beside the baseline, never in a
//!     ratio);
//!   - the guest's `bench` under 1, 2 and 3 compartments on a fresh FAT disk (or `mem`);
//!   - the guest's `bench ramfs` (vfs's RAM file system, FlexOS's own setup: -c 2 is
//!     its EPT2) under 1, 2 and 3 compartments.
//!
//! Host files and disk images live on /dev/shm, so neither side pays a real fdatasync.
//! A last, durable table runs DELETE once on the real disk (target/bench/durable).

use std::cell::RefCell;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Value};

use super::{met, number_list, policies, shown, Env};
use crate::measure::svg::{grouped_bars, Bar};
use crate::measure::{self, Case, Outcome, Plan, Sample, Table};
use crate::workload::{Knobs, Place, Sqlite, Storage, Target, Workload};

/// FlexOS ASPLOS'22 Figure 10 (seconds, 5000 inserts, database on a ramfs).
const FLEXOS: [(&str, f64); 6] = [
    ("Unikraft (none)", 0.052),
    ("FlexOS NONE", 0.054),
    ("FlexOS MPK3", 0.106),
    ("FlexOS EPT2 (fs in 2nd VM)", 0.173),
    ("Linux process", 0.177),
    ("seL4/Genode", 0.333),
];
const FLEXOS_NONE: f64 = 0.054;
const FLEXOS_EPT2: f64 = 0.173;
const FLEXOS_LINUX: f64 = 0.177;
const GOAL_1_HOST: f64 = 0.5;
const GOAL_2_1: f64 = 1.3;

/// The host baseline program: Python's sqlite3 module (the system's libsqlite3), one
/// prepared statement (the module's statement cache) stepped N times, autocommit,
/// timed around the loop only; prints the seconds. The same baseline every published
/// figure was measured against.
const HOST_BASELINE: &str = r#"
import os, sqlite3, sys, time
path, journal, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for s in ("", "-journal", "-wal", "-shm"):
    if os.path.exists(path + s): os.remove(path + s)
conn = sqlite3.connect(path, isolation_level=None)
mode = conn.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
if mode != journal: sys.exit(f"host sqlite3 refused journal_mode={journal} (got {mode})")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE tab(id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
insert = "INSERT INTO tab VALUES (null,'value')"
start = time.perf_counter()
for _ in range(n): conn.execute(insert)
seconds = time.perf_counter() - start
count = conn.execute("SELECT count(*) FROM tab").fetchone()[0]
conn.close()
for s in ("", "-journal", "-wal", "-shm"):
    if os.path.exists(path + s): os.remove(path + s)
if count != n: sys.exit(f"host baseline stored {count} rows, not {n}")
print(seconds, sqlite3.sqlite_version)
"#;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Autocommit INSERTs per run.
    #[arg(long, default_value_t = 5000)]
    pub inserts: u32,
    /// Runs of every case, interleaved; the table shows their median and best.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Rows of the durable table (real disk: ~3 fdatasyncs of ~2 ms per row).
    #[arg(long, default_value_t = 1000)]
    pub durable_inserts: u32,
    /// Skip the durable table.
    #[arg(long)]
    pub no_durable: bool,
    /// Compartment counts of the disk (or mem) rows, a subset of 1,2,3.
    #[arg(long, default_value = "1,2,3")]
    pub compartments: String,
    /// Guest storage of those rows: the FAT disk through vfs, or `mem` (in memory).
    #[arg(long, default_value = "disk", value_parser = ["disk", "mem"])]
    pub storage: String,
    /// Compartment counts of the ramfs rows (vfs's RAM file system); empty for none.
    #[arg(long, default_value = "1,2,3")]
    pub ramfs: String,
    /// Journal modes, each a table: a subset of delete,wal.
    #[arg(long, default_value = "delete,wal")]
    pub journals: String,
    /// Measure DELETE again beside N busy processes and report slowdowns.
    #[arg(long, default_value_t = 0)]
    pub load: usize,
    /// Passed to the monitor as --tune (a thread-policy candidate).
    #[arg(long)]
    pub tune: Option<String>,
}

/// Removes a database and its journals.
fn remove_db(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn host_python(dir: &Path, journal: &str, inserts: u32) -> Result<Sample, String> {
    let out = Command::new("python3")
        .args(["-c", HOST_BASELINE])
        .arg(dir.join("host.db"))
        .args([journal, &inserts.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    match (
        out.status.success(),
        words.next().and_then(|s| s.parse().ok()),
    ) {
        (true, Some(seconds)) => Ok(Sample {
            value: seconds,
            detail: json!({"sqlite_version": words.next()}),
        }),
        _ => Err(format!(
            "the host baseline failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn workload_sql(journal: &str, inserts: u32) -> String {
    let mut s = format!(
        "PRAGMA journal_mode={journal};\nPRAGMA synchronous=FULL;\nCREATE TABLE tab(id INTEGER PRIMARY KEY, text TEXT NOT NULL);\n"
    );
    for _ in 0..inserts {
        s.push_str("INSERT INTO tab VALUES (null,'value');\n");
    }
    s
}

fn host_cli(dir: &Path, journal: &str, inserts: u32) -> Result<Sample, String> {
    use std::io::Write as _;
    let path = dir.join("cli.db");
    remove_db(&path);
    let script = workload_sql(journal, inserts);
    let start = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sqlite3: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let _ = writer.join();
    remove_db(&path);
    if !out.status.success() {
        return Err(format!(
            "sqlite3 CLI failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(seconds.into())
}

struct Setup<'e> {
    env: &'e Env,
    args: &'e Args,
    comps: Vec<u32>,
    ramfs: Vec<u32>,
}

impl Setup<'_> {
    fn storage(&self) -> Storage {
        if self.args.storage == "mem" {
            Storage::Mem
        } else {
            Storage::Disk
        }
    }

    /// One table: host, host CLI, the guest rows, the ramfs rows.
    fn measure(
        &self,
        dir: &Path,
        journal: &str,
        inserts: u32,
        reps: usize,
        ramfs: bool,
        load: usize,
    ) -> Result<Outcome, String> {
        let target = Target {
            scratch: dir.to_path_buf(),
            ..self.env.target("sqlite.elf", self.args.tune.as_deref())
        };
        let knobs = Knobs {
            inserts: Some(inserts),
            ..Knobs::default()
        };
        let on_disk: Rc<RefCell<Box<dyn Workload>>> = Rc::new(RefCell::new(Box::new(
            Sqlite::new(&knobs)?
                .journal(journal)
                .storage(self.storage()),
        )));
        on_disk.borrow_mut().prepare(&target)?;
        let on_ramfs: Rc<RefCell<Box<dyn Workload>>> = Rc::new(RefCell::new(Box::new(
            Sqlite::new(&knobs)?
                .journal(journal)
                .storage(Storage::Ramfs),
        )));
        let d = dir.to_path_buf();
        let j = journal.to_string();
        let baseline = Case::new("host", "host: Python sqlite3, 1 prepared stmt", move || {
            host_python(&d, &j, inserts)
        });
        let d = dir.to_path_buf();
        let j = journal.to_string();
        let mut cases = vec![Case::new(
            "host_cli",
            "host: sqlite3 CLI (parses each line)",
            move || host_cli(&d, &j, inserts),
        )];
        let places: Vec<(String, Place)> = self
            .comps
            .iter()
            .map(|&c| (c.to_string(), Place::Compartments(c)))
            .collect();
        for (mut case, &c) in measure::workload_cases(&on_disk, &target, &places)
            .into_iter()
            .zip(&self.comps)
        {
            case.label = format!("guest: {c} compartment(s)");
            cases.push(case);
        }
        if ramfs {
            let places: Vec<(String, Place)> = self
                .ramfs
                .iter()
                .map(|&c| (format!("ramfs-{c}"), Place::Compartments(c)))
                .collect();
            for (mut case, &c) in measure::workload_cases(&on_ramfs, &target, &places)
                .into_iter()
                .zip(&self.ramfs)
            {
                case.label = format!("guest ramfs: {c} compartment(s)");
                cases.push(case);
            }
        }
        let mut plan = Plan {
            tag: format!("flexos-bench sqlite: {}", journal.to_uppercase()),
            reps,
            baseline: Some(baseline),
            cases,
            load,
        };
        let out = measure::run(&mut plan);
        drop(plan);
        on_disk.borrow_mut().cleanup();
        out
    }
}

/// `key`'s ratio as the table shows it: 1 compartment against the host, more against
/// 1 compartment of the same storage.
fn ratio_text(values: &dyn Fn(&str) -> Option<f64>, key: &str) -> String {
    let (prefix, c) = match key.strip_prefix("ramfs-") {
        Some(c) => ("ramfs-", c),
        None => ("", key),
    };
    let Some(v) = values(key) else {
        return String::new();
    };
    if c == "1" {
        return values("host").map_or(String::new(), |h| format!("{:.2}x host", v / h));
    }
    values(&format!("{prefix}1")).map_or(String::new(), |one| {
        format!("{:.2}x 1 compartment", v / one)
    })
}

fn table(title: &str, out: &Outcome) -> String {
    let median = |k: &str| out.median(k);
    let best = |k: &str| out.get(k).map(|s| s.best(false));
    let mut t = Table::new(&["case", "median s", "ratio", "best s", "ratio"]);
    for (key, label) in &out.order {
        let (m, b) = (
            median(key).unwrap_or(f64::NAN),
            best(key).unwrap_or(f64::NAN),
        );
        let (rm, rb) = match key.as_str() {
            "host" => ("(baseline)".to_string(), "(baseline)".to_string()),
            "host_cli" => (String::new(), String::new()),
            k => (ratio_text(&median, k), ratio_text(&best, k)),
        };
        t.row(vec![
            label.clone(),
            format!("{m:.4}"),
            rm,
            format!("{b:.4}"),
            rb,
        ]);
    }
    format!("\n{title}\n{}", t.render())
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let setup = Setup {
        env,
        args,
        comps: number_list(&args.compartments, "--compartments", |c| {
            (1..=3).contains(&c)
        })?,
        ramfs: number_list(&args.ramfs, "--ramfs", |c| (1..=3).contains(&c))?,
    };
    if setup.comps.is_empty() {
        return Err("--compartments: choose from 1,2,3".into());
    }
    if args.inserts == 0 || args.reps == 0 || args.durable_inserts == 0 {
        return Err("--inserts, --reps and --durable-inserts must be at least 1".into());
    }
    for tool in ["sqlite3", "mcopy", "python3"] {
        crate::workload::require_tool(tool, tool)?;
    }
    let load_at_start = measure::load_average();
    let shm = &env.scratch;
    let journals: Vec<&str> = args.journals.split(',').filter(|j| !j.is_empty()).collect();
    if journals.is_empty() || journals.iter().any(|j| !["delete", "wal"].contains(j)) {
        return Err(format!(
            "--journals: a subset of delete,wal, not '{}'",
            args.journals
        ));
    }
    let mut tables: Vec<(&str, Outcome)> = Vec::new();
    for j in &journals {
        let load = if *j == "delete" { args.load } else { 0 };
        tables.push((
            j,
            setup.measure(shm, j, args.inserts, args.reps, true, load)?,
        ));
    }
    let durable = if args.no_durable {
        None
    } else {
        let dir = env.out.join("durable");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let out = setup.measure(&dir, "delete", args.durable_inserts, 1, false, 0);
        let _ = std::fs::remove_dir_all(&dir);
        Some(out?)
    };

    println!(
        "SQLite, {} autocommit INSERTs, synchronous FULL, median of {}; load average {load_at_start:.1} at start (other builds run on this 2-core host)",
        args.inserts, args.reps
    );
    for (j, out) in &tables {
        print!(
            "{}",
            table(
                &format!("journal {}, files and images on /dev/shm", j.to_uppercase()),
                out
            )
        );
    }
    if let Some(d) = &durable {
        print!(
            "{}",
            table(
                &format!("durable: journal DELETE on the real disk, {} inserts, one run (reported, not a goal)", args.durable_inserts),
                d
            )
        );
    }
    let delete = tables.iter().find(|(j, _)| *j == "delete").map(|(_, o)| o);
    let (goals, ratios) = match delete {
        Some(d) => goals(d, args.inserts),
        None => (String::new(), Value::Null),
    };
    print!("{goals}");

    let mut policy_cases = Vec::new();
    let image = env.image("sqlite.elf").display().to_string();
    for &c in &setup.comps {
        let mut a = vec!["-c".to_string(), c.to_string()];
        a.extend(Env::tune_opts(args.tune.as_deref()));
        if args.storage == "disk" {
            a.extend(["--disk".into(), "d.img".into()]);
        }
        a.push(image.clone());
        policy_cases.push((c.to_string(), a));
    }
    for &c in &setup.ramfs {
        let mut a = vec!["-c".to_string(), c.to_string()];
        a.extend(Env::tune_opts(args.tune.as_deref()));
        a.push(image.clone());
        policy_cases.push((format!("ramfs-{c}"), a));
    }
    let (policy_text, policy_json) = policies(&env.vmm(), &policy_cases)?;
    print!("{policy_text}");

    let host_version = tables[0]
        .1
        .get("host")
        .and_then(|s| s.details.first())
        .and_then(|d| d["sqlite_version"].as_str())
        .map(String::from);
    let mut js_tables = serde_json::Map::new();
    for (j, out) in &tables {
        js_tables.insert(j.to_string(), out.json(false));
    }
    if let Some(d) = &durable {
        js_tables.insert("durable".into(), d.json(false));
    }
    let js = json!({
        "bench": "sqlite",
        "inserts": args.inserts,
        "reps": args.reps,
        "guest_storage": args.storage,
        "compartments": setup.comps,
        "ramfs_compartments": setup.ramfs,
        "durable_inserts": durable.as_ref().map(|_| args.durable_inserts),
        "host_sqlite_version": host_version,
        "baseline": "Python sqlite3 module, one prepared statement, isolation_level=None (autocommit), synchronous=FULL, default locking mode",
        "load": load_at_start,
        "load_after": measure::load_average(),
        "tune": args.tune,
        "policies": Value::Object(policy_json),
        "journals": journals,
        "tables": js_tables,
        "ratios_delete": ratios,
    });
    measure::write_json(&env.out, "sqlite.json", &js)?;
    let svg = svg(&setup, args, &tables);
    measure::write_file(&env.out, "sqlite.svg", &svg)?;
    println!(
        "JSON: {}  plot: {}",
        shown(&env.out.join("sqlite.json")),
        shown(&env.out.join("sqlite.svg"))
    );
    Ok(())
}

/// The goal lines (DELETE) and the ratios for the JSON.
fn goals(delete: &Outcome, inserts: u32) -> (String, Value) {
    let m = |k: &str| delete.median(k);
    let b = |k: &str| delete.get(k).map(|s| s.best(false));
    let mut r = serde_json::Map::new();
    let mut s = String::from("\ngoals (DELETE):\n");
    if let (Some(one), Some(host)) = (m("1"), m("host")) {
        let x = one / host;
        r.insert("1/host".into(), json!(x));
        s += &format!(
            "  1 compartment / host  = {x:.2}x  goal <= {GOAL_1_HOST}x  {}   (FlexOS NONE / Linux: 0.054/0.177 = 0.31x, ramfs, no block device)\n",
            met(x <= GOAL_1_HOST)
        );
        if let Some(two) = m("2") {
            let x = two / one;
            r.insert("2/1".into(), json!(x));
            s += &format!(
                "  2 / 1 compartment     = {x:.2}x  goal <= {GOAL_2_1}x  {}   (FlexOS EPT2 / NONE: 0.173/0.054 = 3.2x)\n",
                met(x <= GOAL_2_1)
            );
        }
        if let Some(three) = m("3") {
            r.insert("3/1".into(), json!(three / one));
            s += &format!(
                "  3 / 1 compartment     = {:.2}x  (no goal; FlexOS had no EPT3)\n",
                three / one
            );
        }
    }
    // The ramfs rows are FlexOS's own setup: the same goals, beside its figures.
    if let (Some(one), Some(host)) = (m("ramfs-1"), m("host")) {
        let x = one / host;
        r.insert("ramfs-1/host".into(), json!(x));
        s += &format!(
            "  ramfs: 1 compartment / host = {x:.2}x  goal <= {GOAL_1_HOST}x  {}   (FlexOS NONE / Linux: {FLEXOS_NONE}/{FLEXOS_LINUX} = {:.2}x)\n",
            met(x <= GOAL_1_HOST),
            FLEXOS_NONE / FLEXOS_LINUX
        );
        if let Some(two) = m("ramfs-2") {
            let x = two / one;
            r.insert("ramfs-2/ramfs-1".into(), json!(x));
            s += &format!(
                "  ramfs: 2 / 1 compartment    = {x:.2}x  goal <= {GOAL_2_1}x  {}   (FlexOS EPT2 / NONE: {FLEXOS_EPT2}/{FLEXOS_NONE} = {:.1}x)\n",
                met(x <= GOAL_2_1),
                FLEXOS_EPT2 / FLEXOS_NONE
            );
        }
        if let Some(three) = m("ramfs-3") {
            r.insert("ramfs-3/ramfs-1".into(), json!(three / one));
            s += &format!(
                "  ramfs: 3 / 1 compartment    = {:.2}x  (no goal; FlexOS had no EPT3)\n",
                three / one
            );
        }
    }
    if let Some(two) = m("ramfs-2") {
        let mut line = format!(
            "  ramfs, 2 compartments: {two:.4} s; FlexOS EPT2 (fs in 2nd VM): {FLEXOS_EPT2} s"
        );
        if let Some(one) = m("ramfs-1") {
            line += &format!("; ramfs, 1 compartment: {one:.4} s; FlexOS NONE: {FLEXOS_NONE} s");
        }
        if inserts != 5000 {
            line += &format!(" (ours for {inserts} inserts, FlexOS's for 5000)");
        }
        s += &format!("{line} (their Xeon, our kvm-pvm host: compare the ratios)\n");
    }
    if let (Some(one), Some(host)) = (b("1"), b("host")) {
        let mut line = format!("  best runs: 1 compartment / host = {:.2}x", one / host);
        if let Some(two) = b("2") {
            line += &format!(", 2 / 1 compartment = {:.2}x", two / one);
        }
        s += &format!("{line}\n");
    }
    if let (Some(one), Some(host)) = (b("ramfs-1"), b("host")) {
        let mut line = format!(
            "  best runs: ramfs 1 compartment / host = {:.2}x",
            one / host
        );
        if let Some(two) = b("ramfs-2") {
            line += &format!(", ramfs 2 / 1 compartment = {:.2}x", two / one);
        }
        s += &format!("{line}\n");
    }
    let flexos: Vec<String> = FLEXOS.iter().map(|(n, v)| format!("{n} {v}")).collect();
    s += &format!("FlexOS Figure 10 (s): {}\n", flexos.join(", "));
    if let Some(loaded) = &delete.loaded {
        if let Some(text) = delete.load_table(false) {
            s += &format!("\nunder load (journal DELETE): {text}");
        }
        let slow = |k: &str| Some(loaded.median(k)? / delete.median(k)?);
        if let (Some(one), Some(host)) = (slow("1"), slow("host")) {
            let rel = one / host;
            r.insert("load_1_vs_host_slowdown".into(), json!(rel));
            s += &format!(
                "  goal: 1 compartment's slowdown <= 2x the host's: {rel:.2}x  {}\n",
                met(rel <= 2.0)
            );
        }
    }
    (s, Value::Object(r))
}

fn svg(setup: &Setup<'_>, args: &Args, tables: &[(&str, Outcome)]) -> String {
    let colour = |k: &str| match k {
        "host" => "#4c72b0",
        "1" => "#dd8452",
        "2" => "#c44e52",
        "3" => "#8172b2",
        "ramfs-1" => "#55a868",
        "ramfs-2" => "#2f7d4a",
        _ => "#1b4d2c",
    };
    let mut groups = vec![(
        "FlexOS Figure 10 (paper)".to_string(),
        FLEXOS
            .iter()
            .map(|(n, s)| Bar::new(*n, *s, "#999999"))
            .collect(),
    )];
    for (j, out) in tables {
        let name = format!("ours: {}, /dev/shm", j.to_uppercase());
        let mut bars = vec![Bar::new(
            "host sqlite3",
            out.median("host").unwrap_or(0.0),
            colour("host"),
        )];
        for &c in &setup.comps {
            let k = c.to_string();
            bars.push(Bar::new(
                format!("{c} compartment(s)"),
                out.median(&k).unwrap_or(0.0),
                colour(&k),
            ));
        }
        for &c in &setup.ramfs {
            let k = format!("ramfs-{c}");
            bars.push(Bar::new(
                format!("ramfs, {c} compartment(s)"),
                out.median(&k).unwrap_or(0.0),
                colour(&k),
            ));
        }
        groups.push((name, bars));
    }
    grouped_bars(
        &format!(
            "SQLite: {} autocommit INSERTs, seconds (median of {})",
            args.inserts, args.reps
        ),
        "seconds",
        &groups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_compare_like_with_like() {
        let values = |k: &str| match k {
            "host" => Some(0.2),
            "1" => Some(0.1),
            "2" => Some(0.12),
            "ramfs-1" => Some(0.05),
            "ramfs-2" => Some(0.1),
            _ => None,
        };
        assert_eq!(ratio_text(&values, "1"), "0.50x host");
        assert_eq!(ratio_text(&values, "2"), "1.20x 1 compartment");
        assert_eq!(ratio_text(&values, "ramfs-2"), "2.00x 1 compartment");
        assert_eq!(ratio_text(&values, "3"), "");
    }

    #[test]
    fn the_cli_script_is_the_workload() {
        let sql = workload_sql("wal", 2);
        assert!(sql.starts_with("PRAGMA journal_mode=wal;\nPRAGMA synchronous=FULL;\n"));
        assert_eq!(sql.matches("INSERT").count(), 2);
    }
}
