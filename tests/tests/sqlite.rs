//! The `sqlite` image: SQLite 3 compiled freestanding, over the image's own VFS. With
//! `mem` (in-memory storage): exact console output of `sql=` runs (including the two
//! floating-point traps of freestanding C), the Figure 10 `bench` in both journal modes, SQL and
//! argument errors, a full heap reported as SQLITE_FULL. On a FAT disk image (`--disk`,
//! through the vfs and blkdev components) in 1, 2 and 3 compartments: the database the
//! bench leaves is read back by the host's mtools and sqlite3, a second run reads it, a
//! bench run again starts from a fresh table (and the file carries the host's date),
//! and a missing, non-FAT or full disk ends the run cleanly. On vfs's RAM file system
//! (`ramfs`) in 1, 2 and 3 compartments: the bench and a read-back in the same run, a
//! disk given anyway left alone, a full cap or heap reported as SQLITE_FULL. Last, the
//! allowlist of C symbols the SQLite object expects the image to provide.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use flexos_e2e::{
    image, mkdisk, repo_root, require_tool, run, run_program, Background, Outcome, TempDir,
};

/// Exit status: the disk is in use by another run.
const EXIT_IN_USE: i32 = 75;

const USAGE: &str = "usage: sqlite [bench [n=N]] [journal=delete|wal] [sql=\"STATEMENTS\"] \
                     [mem | [db=NAME] [ramfs [vfs.ramfs=MiB]]]";

/// Runs the sqlite image with `vmm_args` before the image and `guest_args` after `--`.
#[track_caller]
fn sqlite_with(vmm_args: &[&str], guest_args: &[&str]) -> Outcome {
    let mut args: Vec<OsString> = vmm_args.iter().map(OsString::from).collect();
    args.push(image("sqlite").into_os_string());
    args.push("--".into());
    args.extend(guest_args.iter().map(OsString::from));
    run(args)
}

/// Runs the sqlite image on in-memory storage (`mem` after `guest_args`).
#[track_caller]
fn sqlite(guest_args: &[&str]) -> Outcome {
    let mut args = guest_args.to_vec();
    args.push("mem");
    sqlite_with(&[], &args)
}

/// Runs `sql=<statements>` and checks a clean exit with exactly `rows` on stdout.
#[track_caller]
fn query(statements: &str, rows: &[&str]) {
    let arg = format!("sql={statements}");
    sqlite(&[&arg])
        .assert_status(0)
        .assert_stdout_lines(rows)
        .assert_stderr_empty();
}

/// Trap 1: gcc under -ffreestanding calls `fabs` as a function, which
/// bound to compiler_builtins' soft-float fabs (argument in rdi, not xmm0), and SQLite's
/// compensated sum came out 0.0.
#[test]
fn compensated_sum_is_exact() {
    // SQLite names a VALUES list's columns column1, column2, ...
    query(
        "SELECT sum(column1) FROM (VALUES(-1e100),(1.0),(1e100))",
        &["1.0"],
    );
    query(
        "WITH v(x) AS (VALUES(-1e100),(1.0),(1e100)) SELECT sum(x) FROM v",
        &["1.0"],
    );
}

/// Trap 2: doubles through C varargs (SQLite's printf) must come out
/// right, not as 1.358e-312.
#[test]
fn doubles_format_through_varargs() {
    query("SELECT 1.5*2", &["3.0"]);
    query(
        "SELECT 0.1+0.2, 2.0/3, -2.5e-300, 1e308*10, round(2.5), abs(-1.5)",
        &["0.30000000000000004|0.66666666666666663|-2.5e-300|Inf|3.0|1.5"],
    );
}

#[test]
fn create_insert_select_round_trip() {
    query(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL);\
         INSERT INTO t(name, score) VALUES ('ada', 1.5), ('bob', NULL), ('cy|d', -2);\
         UPDATE t SET score = score * 2 WHERE name = 'ada';\
         SELECT * FROM t ORDER BY id;\
         SELECT count(*), sum(score), group_concat(name, ',') FROM t;\
         DELETE FROM t WHERE id = 2;\
         SELECT id FROM t ORDER BY id DESC",
        &[
            "1|ada|3.0",
            "2|bob|",
            "3|cy|d|-2.0",
            "3|1.0|ada,bob,cy|d",
            "3",
            "1",
        ],
    );
}

#[test]
fn semicolons_inside_literals_do_not_split_statements() {
    query("SELECT 'a;b', ';'; SELECT 2", &["a;b|;", "2"]);
}

#[test]
fn empty_statements_and_comments_print_nothing() {
    query("SELECT 1;; -- a comment\n ;  /* another */ ", &["1"]);
    query("", &[]);
}

/// One line of `bench` JSON, with its keys checked in order and its values returned.
#[track_caller]
fn bench_json(out: &Outcome, line: &str) -> (u64, u64, String, String) {
    let body = line
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON object: {line:?}\n{out:?}"));
    let fields: Vec<(&str, &str)> = body
        .split(',')
        .map(|field| {
            field
                .split_once(':')
                .unwrap_or_else(|| panic!("bad JSON field {field:?} in {line:?}"))
        })
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "\"bench\"",
            "\"compartments\"",
            "\"inserts\"",
            "\"journal\"",
            "\"seconds\"",
            "\"gate_calls\"",
            "\"gate_sleeps\""
        ],
        "JSON keys\n{out:?}"
    );
    assert_eq!(fields[0].1, "\"sqlite\"", "bench name\n{out:?}");
    let number = |v: &str| {
        v.parse::<u64>()
            .unwrap_or_else(|_| panic!("not an integer: {v:?}\n{out:?}"))
    };
    // Calls between compartments: none in one (every call is direct), some in more.
    let (compartments, calls) = (number(fields[1].1), number(fields[5].1));
    assert_eq!(compartments == 1, calls == 0, "gate calls\n{out:?}");
    number(fields[6].1);
    let seconds = fields[4].1;
    let (whole, frac) = seconds
        .split_once('.')
        .unwrap_or_else(|| panic!("seconds {seconds:?} is not S.SSSSSS\n{out:?}"));
    assert!(
        !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && frac.len() == 6
            && frac.bytes().all(|b| b.is_ascii_digit()),
        "seconds {seconds:?} is not S.SSSSSS\n{out:?}"
    );
    let journal = fields[3]
        .1
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or_else(|| panic!("journal is not a string\n{out:?}"));
    (
        number(fields[1].1),
        number(fields[2].1),
        journal.to_string(),
        seconds.to_string(),
    )
}

/// Checks a bench run: exit 0, `progress` lines, the JSON line, then `after` lines.
#[track_caller]
fn check_bench(out: &Outcome, progress: &[&str], inserts: u64, journal: &str, after: &[&str]) {
    out.assert_status(0).assert_stderr_empty();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        progress.len() + 1 + after.len(),
        "line count\n{out:?}"
    );
    assert_eq!(
        &lines[..progress.len()],
        progress,
        "progress lines\n{out:?}"
    );
    let (compartments, n, mode, _seconds) = bench_json(out, lines[progress.len()]);
    assert_eq!(
        (compartments, n, mode.as_str()),
        (1, inserts, journal),
        "{out:?}"
    );
    assert_eq!(
        &lines[progress.len() + 1..],
        after,
        "lines after JSON\n{out:?}"
    );
}

#[test]
fn bench_prints_progress_and_json() {
    let out = sqlite(&["bench", "n=200"]);
    check_bench(&out, &["committed 200"], 200, "delete", &[]);
}

#[test]
fn bench_commits_every_row_it_reports() {
    let out = sqlite(&[
        "bench",
        "n=1200",
        "sql=SELECT count(*), min(id), max(id), count(DISTINCT text) FROM tab; PRAGMA journal_mode",
    ]);
    check_bench(
        &out,
        &["committed 500", "committed 1000", "committed 1200"],
        1200,
        "delete",
        &["1200|1|1200|1", "delete"],
    );
}

#[test]
fn bench_runs_in_wal_mode() {
    let out = sqlite(&[
        "bench",
        "n=1000",
        "journal=wal",
        "sql=PRAGMA journal_mode; PRAGMA locking_mode; SELECT count(*) FROM tab; PRAGMA integrity_check",
    ]);
    // 1000 is a multiple of 500: no extra line at the end.
    check_bench(
        &out,
        &["committed 500", "committed 1000"],
        1000,
        "wal",
        &["wal", "exclusive", "1000", "ok"],
    );
}

#[test]
fn bench_default_is_5000_rows() {
    let out = sqlite(&["bench"]);
    let progress: Vec<String> = (1..=10).map(|k| format!("committed {}", k * 500)).collect();
    let progress: Vec<&str> = progress.iter().map(String::as_str).collect();
    check_bench(&out, &progress, 5000, "delete", &[]);
}

#[test]
fn sql_error_prints_message_and_exits_1() {
    sqlite(&["sql=SELEC 1"])
        .assert_status(1)
        .assert_stdout_lines(&["error: near \"SELEC\": syntax error"])
        .assert_stderr_empty();
    // Statements before the error ran and printed; nothing after it runs.
    sqlite(&["sql=SELECT 1; SELECT * FROM nope; SELECT 2"])
        .assert_status(1)
        .assert_stdout_lines(&["1", "error: no such table: nope"])
        .assert_stderr_empty();
    // The brief's literal float query names a column VALUES does not have.
    sqlite(&["sql=SELECT sum(x) FROM (VALUES(-1e100),(1.0),(1e100))"])
        .assert_status(1)
        .assert_stdout_lines(&["error: no such column: x"])
        .assert_stderr_empty();
}

#[test]
fn constraint_error_after_bench() {
    let out = sqlite(&["bench", "n=3", "sql=INSERT INTO tab VALUES (null, null)"]);
    out.assert_status(1).assert_stderr_empty();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert_eq!(lines[0], "committed 3", "{out:?}");
    bench_json(&out, lines[1]);
    assert_eq!(
        lines[2], "error: NOT NULL constraint failed: tab.text",
        "{out:?}"
    );
}

/// MemStorage turns heap exhaustion into SQLITE_FULL; the run ends cleanly.
#[test]
fn full_heap_is_sqlite_full() {
    sqlite_with(
        &["--mem", "16"],
        &[
            "mem",
            "sql=CREATE TABLE b(x); INSERT INTO b VALUES (zeroblob(64000000))",
        ],
    )
    .assert_status(1)
    .assert_stdout_lines(&["error: database or disk is full"])
    .assert_stderr_empty();
}

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    for (args, problem) in [
        (&[][..], "sqlite: nothing to do"),
        (&["foo"][..], "sqlite: unknown argument 'foo'"),
        (
            &["bench", "n=0"][..],
            "sqlite: bad row count '0' (want 1..=4294967295)",
        ),
        (
            &["bench", "n=+5"][..],
            "sqlite: bad row count '+5' (want 1..=4294967295)",
        ),
        (
            &["bench", "n=x"][..],
            "sqlite: bad row count 'x' (want 1..=4294967295)",
        ),
        (
            &["bench", "journal=truncate"][..],
            "sqlite: bad journal mode 'truncate' (want delete|wal)",
        ),
        (&["n=5"][..], "sqlite: n= needs bench"),
        (
            &["sql=SELECT 1", "sql=SELECT 2"][..],
            "sqlite: sql= given twice",
        ),
        (&["bench", "db=a/b"][..], "sqlite: bad database name 'a/b'"),
        (&["bench", "db="][..], "sqlite: bad database name ''"),
        (
            &["bench", "db=x.db"][..],
            "sqlite: db= and mem exclude each other",
        ),
        // (`sqlite` adds `mem`.)
        (
            &["bench", "ramfs"][..],
            "sqlite: ramfs and mem exclude each other",
        ),
        (
            &["bench", "vfs.ramfs=8"][..],
            "sqlite: vfs.ramfs= needs ramfs",
        ),
        (
            &["bench", "ramfs", "vfs.ramfs=8M"][..],
            "sqlite: bad vfs.ramfs size '8M' (want MiB)",
        ),
        (
            &["bench", "vfs.ramfs=-1"][..],
            "sqlite: bad vfs.ramfs size '-1' (want MiB)",
        ),
        (
            &["bench", "vfs.cache=1"][..],
            "sqlite: unknown argument 'vfs.cache=1'",
        ),
    ] {
        sqlite(args)
            .assert_status(2)
            .assert_stdout_lines(&[problem, USAGE])
            .assert_stderr_empty();
    }
}

/// `bench ramfs` (vfs's RAM file system, no disk) in each split and journal mode: the
/// progress and JSON lines, then `sql=` in the same run reads the rows back and finds
/// the database intact. With 2 compartments this is FlexOS's EPT2 Figure 10 setup.
#[test]
fn bench_on_ramfs_in_every_split_reads_its_rows_back() {
    for journal in ["delete", "wal"] {
        for n in 1..=3u32 {
            let mode = format!("journal={journal}");
            let out = sqlite_with(
                &["-c", &n.to_string()],
                &[
                    "bench",
                    "n=700",
                    &mode,
                    "ramfs",
                    "sql=SELECT count(*), min(id), max(id), count(DISTINCT text) FROM tab; \
                     PRAGMA integrity_check; PRAGMA journal_mode",
                ],
            );
            out.assert_status(0).assert_stderr_empty();
            let prefix = app_prefix(n);
            let lines: Vec<&str> = out.stdout.lines().collect();
            let want_before = [
                format!("{prefix}committed 500"),
                format!("{prefix}committed 700"),
            ];
            assert_eq!(lines.len(), 6, "{out:?}");
            assert_eq!(lines[..2], want_before, "{out:?}");
            let json = lines[2]
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("no {prefix:?} prefix\n{out:?}"));
            let (compartments, inserts, mode, _) = bench_json(&out, json);
            assert_eq!(
                (compartments, inserts, mode.as_str()),
                (u64::from(n), 700, journal),
                "{out:?}"
            );
            let after: Vec<String> = ["700|1|700|1", "ok", journal]
                .iter()
                .map(|l| format!("{prefix}{l}"))
                .collect();
            assert_eq!(lines[3..], after, "{out:?}");
        }
    }
}

/// `db=` names the file on ramfs as on the disk; with a disk given anyway, vfs says
/// once that it is not used and leaves its bytes alone.
#[test]
fn ramfs_takes_db_and_leaves_a_given_disk_alone() {
    let dir = TempDir::new("sqlite-ramfs-disk");
    let img = mkdisk(&dir, 16);
    let before = std::fs::read(&img).unwrap();
    let out = sqlite_on_disk(
        2,
        &img,
        &[
            "ramfs",
            "db=other.db",
            "sql=CREATE TABLE t(x); INSERT INTO t VALUES (42); SELECT x FROM t",
        ],
    );
    out.assert_status(0)
        .assert_stdout_lines(&["[fs] vfs: ramfs: the disk is not used", "[app] 42"])
        .assert_stderr_empty();
    assert!(std::fs::read(&img).unwrap() == before, "the disk changed");
}

/// A full RAM file system is SQLITE_FULL and a clean exit 1, whether its cap is
/// reached (given, or the default of half the heap) or the heap runs out first (a cap
/// larger than the compartment's memory).
#[test]
fn a_full_ramfs_is_sqlite_full() {
    let fill = "sql=CREATE TABLE b(x); INSERT INTO b VALUES (zeroblob(64000000))";
    let full = "error: database or disk is full";
    // The cap: 1 MiB, in each split.
    for n in 1..=3u32 {
        sqlite_with(&["-c", &n.to_string()], &["ramfs", "vfs.ramfs=1", fill])
            .assert_status(1)
            .assert_stdout_lines(&[&format!("{}{full}", app_prefix(n))])
            .assert_stderr_empty();
    }
    // The default cap, and the heap of vfs's compartment (16 MiB of memory), alone or
    // shared with SQLite.
    for n in 1..=2u32 {
        for cap in [None, Some("vfs.ramfs=4096")] {
            let mut args = vec!["ramfs", fill];
            args.extend(cap);
            sqlite_with(&["-c", &n.to_string(), "--mem", "16"], &args)
                .assert_status(1)
                .assert_stdout_lines(&[&format!("{}{full}", app_prefix(n))])
                .assert_stderr_empty();
        }
    }
}

/// The console prefix of the app's lines with `compartments` compartments.
fn app_prefix(compartments: u32) -> &'static str {
    if compartments == 1 {
        ""
    } else {
        "[app] "
    }
}

/// Runs the sqlite image in `compartments` compartments on the disk `img`.
#[track_caller]
fn sqlite_on_disk(compartments: u32, img: &Path, guest_args: &[&str]) -> Outcome {
    let n = compartments.to_string();
    let disk = img.to_str().expect("UTF-8 temp path");
    sqlite_with(&["-c", &n, "--disk", disk], guest_args)
}

/// Copies `name` out of the image with stock mtools and runs `sql` on it with the
/// host's sqlite3; returns sqlite3's output lines.
#[track_caller]
fn host_sqlite3(dir: &TempDir, img: &Path, name: &str, sql: &str) -> Vec<String> {
    require_tool("mcopy", "mtools");
    require_tool("sqlite3", "sqlite3");
    let out = dir.path().join(format!("host-{name}"));
    let _ = std::fs::remove_file(&out);
    let from = format!("::/{name}");
    run_program(
        "mcopy",
        [
            std::ffi::OsStr::new("-i"),
            img.as_os_str(),
            std::ffi::OsStr::new(&from),
            out.as_os_str(),
        ],
    )
    .assert_status(0);
    let query = run_program("sqlite3", [out.as_os_str(), std::ffi::OsStr::new(sql)]);
    query.assert_status(0).assert_stderr_empty();
    query.stdout.lines().map(String::from).collect()
}

/// `bench n=300` on a fresh disk in each split and journal mode: the progress and JSON
/// lines, then the host's sqlite3 finds an intact database with the 300 rows, and a
/// second run on the same disk reads them with `sql=`.
#[test]
fn bench_on_disk_is_read_back_by_the_host_and_by_a_second_run() {
    for journal in ["delete", "wal"] {
        for n in 1..=3u32 {
            let dir = TempDir::new("sqlite-disk");
            let img = mkdisk(&dir, 16);
            let mode = format!("journal={journal}");
            let out = sqlite_on_disk(n, &img, &["bench", "n=300", &mode]);
            out.assert_status(0).assert_stderr_empty();
            let prefix = app_prefix(n);
            let lines: Vec<&str> = out.stdout.lines().collect();
            assert_eq!(lines.len(), 2, "{out:?}");
            assert_eq!(lines[0], format!("{prefix}committed 300"), "{out:?}");
            let json = lines[1]
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("no {prefix:?} prefix\n{out:?}"));
            let (compartments, inserts, mode, _) = bench_json(&out, json);
            assert_eq!(
                (compartments, inserts, mode.as_str()),
                (u64::from(n), 300, journal),
                "{out:?}"
            );

            // The connection closed cleanly: in WAL mode that checkpointed and removed
            // the -wal file, so the database file alone holds every row.
            let rows = host_sqlite3(
                &dir,
                &img,
                "bench.db",
                "PRAGMA integrity_check; SELECT count(*), max(id) FROM tab; PRAGMA journal_mode",
            );
            assert_eq!(
                rows,
                ["ok", "300|300", journal],
                "{n} compartments\n{out:?}"
            );

            sqlite_on_disk(n, &img, &["sql=SELECT count(*) FROM tab"])
                .assert_status(0)
                .assert_stdout_lines(&[&format!("{prefix}300")])
                .assert_stderr_empty();
        }
    }
}

/// Today's date (UTC) as mtools prints it, from the host's `date`.
fn utc_date() -> String {
    let out = run_program("date", ["-u", "+%Y-%m-%d"]);
    out.assert_status(0);
    out.stdout.trim().to_string()
}

/// A user re-runs the bench on the disk it left: each run starts from a fresh table
/// (before, the second failed with "table tab already exists"), so the host finds the
/// last run's rows alone, numbered from 1. The database file carries the host's date
/// (the monitor passes its clock in the boot info), not FAT's empty 1980-00-00.
#[test]
fn bench_runs_again_on_the_disk_it_left_from_a_fresh_table() {
    require_tool("mdir", "mtools");
    let dir = TempDir::new("sqlite-again");
    let img = mkdisk(&dir, 16);
    let before = utc_date();
    for (compartments, rows, journal) in [(2, 300, "delete"), (2, 200, "wal"), (1, 100, "delete")] {
        let n = format!("n={rows}");
        let mode = format!("journal={journal}");
        let out = sqlite_on_disk(compartments, &img, &["bench", &n, &mode]);
        out.assert_status(0).assert_stderr_empty();
        let prefix = app_prefix(compartments);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0], format!("{prefix}committed {rows}"), "{out:?}");
        let (_, inserts, mode, _) = bench_json(&out, lines[1].strip_prefix(prefix).unwrap());
        assert_eq!((inserts, mode.as_str()), (rows, journal), "{out:?}");
    }
    let after = utc_date();
    assert_eq!(
        host_sqlite3(
            &dir,
            &img,
            "bench.db",
            "PRAGMA integrity_check; SELECT count(*), min(id), max(id) FROM tab",
        ),
        ["ok", "100|1|100"]
    );
    let listing = run_program(
        "mdir",
        [
            std::ffi::OsStr::new("-i"),
            img.as_os_str(),
            std::ffi::OsStr::new("::"),
        ],
    );
    listing.assert_status(0);
    let line = listing
        .stdout
        .lines()
        .find(|l| l.ends_with("bench.db"))
        .unwrap_or_else(|| panic!("no bench.db in\n{}", listing.stdout));
    assert!(
        line.contains(&before) || line.contains(&after),
        "bench.db should carry today's date ({before}), not FAT's empty one: {line}"
    );
}

/// One transaction of ~6 MiB: more dirty blocks than the vfs cache holds (4 MiB, so
/// it writes back in the middle) and than one batched device call carries (64 KiB),
/// adjacent blocks merged into multi-block requests, and files that grow (their sizes
/// written behind a barrier). The host's mtools and sqlite3 then find every byte, in
/// each split, and so does a second run.
#[test]
fn a_large_transaction_written_back_in_batches_is_intact_on_the_host() {
    let fill = "CREATE TABLE big(i INTEGER PRIMARY KEY, y TEXT NOT NULL); \
                WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1500) \
                INSERT INTO big SELECT i, printf('%03000d', i) FROM c";
    let check = "SELECT count(*), sum(i), sum(length(y)), \
                 sum(CAST(y AS INTEGER) = i) FROM big";
    // 1500 rows of the row's number zero-padded to 3000 characters.
    let want = "1500|1125750|4500000|1500";
    for n in 1..=3u32 {
        let dir = TempDir::new("sqlite-large");
        let img = mkdisk(&dir, 32);
        sqlite_on_disk(n, &img, &[&format!("sql={fill}")])
            .assert_status(0)
            .assert_stdout_lines(&[])
            .assert_stderr_empty();
        let rows = host_sqlite3(
            &dir,
            &img,
            "bench.db",
            &format!("PRAGMA integrity_check; {check}"),
        );
        assert_eq!(rows, ["ok", want], "{n} compartments");
        sqlite_on_disk(n, &img, &[&format!("sql={check}")])
            .assert_status(0)
            .assert_stdout_lines(&[&format!("{}{want}", app_prefix(n))])
            .assert_stderr_empty();
    }
}

#[test]
fn db_names_the_database_file() {
    let dir = TempDir::new("sqlite-db");
    let img = mkdisk(&dir, 16);
    sqlite_on_disk(
        2,
        &img,
        &[
            "db=other.db",
            "sql=CREATE TABLE t(x); INSERT INTO t VALUES (42)",
        ],
    )
    .assert_status(0)
    .assert_stdout_lines(&[])
    .assert_stderr_empty();
    assert_eq!(
        host_sqlite3(&dir, &img, "other.db", "SELECT x FROM t"),
        ["42"]
    );
    sqlite_on_disk(2, &img, &["db=other.db", "sql=SELECT x FROM t"])
        .assert_status(0)
        .assert_stdout_lines(&["[app] 42"])
        .assert_stderr_empty();
}

/// Storage is chosen, never a fallback: without `--disk` and without `mem` the run
/// says how to attach a disk and exits 1.
/// Two monitors on one disk: before the lock, both printed `committed` and exited 0,
/// and the database was malformed afterwards. Now the disk has one writer or any
/// number of readers; the second run is refused at start (75) naming the holder.
#[test]
fn a_disk_in_use_by_another_run_is_refused_naming_the_holder() {
    let dir = TempDir::new("sqlite-lock");
    let img = mkdisk(&dir, 16);
    let disk = img.to_str().unwrap();
    let sock = dir.path().join("gdb.sock");
    let sock = sock.to_str().unwrap();
    let sqlite_elf = image("sqlite");
    let sqlite_elf = sqlite_elf.to_str().unwrap();
    // The holder: --gdb waits for a debugger before the first instruction, with the
    // disk open and locked.
    let holder = Background::start(
        &[
            "--gdb", sock, "--disk", disk, sqlite_elf, "--", "bench", "n=10",
        ],
        true,
    );
    holder.wait_for(&format!(
        "flexos-vmm: waiting for gdb on {sock} (target remote {sock})"
    ));
    let in_use = |readonly: &str| {
        let arg = format!("{disk}{readonly}");
        let out = sqlite_with(&["--disk", &arg], &["bench", "n=10"]);
        out.assert_status(EXIT_IN_USE);
        assert!(out.stdout.is_empty(), "{out:?}");
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "flexos-vmm: error: --disk: disk {disk} is in use: flexos-vmm (pid {}) holds a \
                 write lock; a disk has one writer or any number of readers (,readonly); wait \
                 for that run to end, or give a copy",
                holder.pid()
            )
        );
    };
    // A second writer, and a reader beside the writer.
    in_use("");
    in_use(",readonly");
    let (status, _, _) = holder.signal("TERM");
    assert_eq!(status, 143);
    // The lock went with the run: the disk is free again.
    let out = sqlite_on_disk(1, &img, &["bench", "n=10"]);
    out.assert_status(0);
    assert_eq!(
        host_sqlite3(&dir, &img, "bench.db", "SELECT count(*) FROM tab"),
        ["10"]
    );
}

#[test]
fn readers_share_a_disk_and_keep_writers_out() {
    let dir = TempDir::new("sqlite-readers");
    let img = mkdisk(&dir, 16);
    sqlite_on_disk(1, &img, &["bench", "n=10"]).assert_status(0);
    let ro = format!("{},readonly", img.display());
    let sock = dir.path().join("gdb.sock");
    let sock = sock.to_str().unwrap();
    let reader = Background::start(
        &[
            "--gdb",
            sock,
            "--disk",
            &ro,
            image("sqlite").to_str().unwrap(),
        ],
        true,
    );
    reader.wait_for(&format!(
        "flexos-vmm: waiting for gdb on {sock} (target remote {sock})"
    ));
    // A second reader runs beside it and reads the rows.
    let out = sqlite_with(&["--disk", &ro], &["sql=SELECT count(*) FROM tab"]);
    out.assert_status(0).assert_stdout_lines(&["10"]);
    // A writer does not.
    let out = sqlite_on_disk(1, &img, &["bench", "n=10"]);
    out.assert_status(EXIT_IN_USE);
    out.assert_stderr_contains(&format!(
        "is in use: flexos-vmm (pid {}) holds a read lock;",
        reader.pid()
    ));
    let (status, _, _) = reader.signal("INT");
    assert_eq!(status, 130);
}

#[test]
fn the_running_image_is_not_a_disk() {
    let elf = image("sqlite");
    for flag in ["", ",readonly"] {
        let arg = format!("{}{flag}", elf.display());
        let out = sqlite_with(&["--disk", &arg], &["bench"]);
        out.assert_status(64);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "flexos-vmm: error: --disk {}: that is the image being booted ({}); give a disk image",
                elf.display(),
                elf.display()
            )
        );
    }
}

/// A FIFO given as a read-only disk blocked in open() for ever (a FIFO opened for
/// reading waits for a writer); read-write it was already refused.
#[test]
fn a_fifo_is_not_a_disk_even_read_only() {
    let dir = TempDir::new("sqlite-fifo");
    let fifo = dir.path().join("disk.fifo");
    run_program("mkfifo", [fifo.as_os_str()]).assert_status(0);
    for flag in ["", ",readonly"] {
        let arg = format!("{}{flag}", fifo.display());
        let out = sqlite_with(&["--disk", &arg], &["bench"]);
        out.assert_status(66);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "flexos-vmm: error: --disk: disk {} is not a regular file; give a regular file (a disk image)",
                fifo.display()
            )
        );
    }
}

#[test]
fn without_a_disk_the_run_says_how_to_get_one() {
    sqlite_with(&[], &["bench", "n=10"])
        .assert_status(1)
        .assert_stdout_lines(&[
            "blkdev: no block device attached (run with --disk PATH)",
            "vfs: cannot mount the disk: no block device",
            "sqlite: no disk: run flexos-vmm with --disk IMAGE (scripts/mkdisk makes one), or pass ramfs or mem",
        ])
        .assert_stderr_empty();
}

#[test]
fn a_disk_without_fat_is_a_clean_error() {
    let dir = TempDir::new("sqlite-zero");
    let img = dir.write("zero.img", &vec![0u8; 4 << 20]);
    sqlite_on_disk(3, &img, &["bench", "n=10"])
        .assert_status(1)
        .assert_stdout_lines(&[
            "[vfs] vfs: cannot mount the disk: the disk holds no FAT file system (Corrupted file system)",
        ])
        .assert_stderr_empty();
}

/// A 1 MiB volume, nearly filled by the host first, fills up during the bench: SQLite
/// reports SQLITE_FULL, the run exits 1 with no crash, and the database the host copies
/// out is intact and holds at least every row the guest reported committed.
#[test]
fn a_full_disk_is_sqlite_full() {
    require_tool("mkfs.fat", "dosfstools");
    require_tool("mcopy", "mtools");
    let dir = TempDir::new("sqlite-full");
    let img = dir.path().join("small.img");
    run_program(
        "mkfs.fat",
        [
            std::ffi::OsStr::new("-C"),
            img.as_os_str(),
            std::ffi::OsStr::new("1024"),
        ],
    )
    .assert_status(0);
    // mkfs.fat makes 1 028 096 bytes free; the filler leaves 32 KiB of them, a few
    // hundred rows, so the run stays well inside the timeout.
    let filler = dir.write("filler", &vec![0x55; 1_028_096 - (32 << 10)]);
    run_program(
        "mcopy",
        [
            std::ffi::OsStr::new("-i"),
            img.as_os_str(),
            filler.as_os_str(),
            std::ffi::OsStr::new("::/filler"),
        ],
    )
    .assert_status(0);
    let out = sqlite_on_disk(1, &img, &["bench", "n=1000000"]);
    out.assert_status(1).assert_stderr_empty();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"error: database or disk is full"),
        "{out:?}"
    );
    let committed: u64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("committed "))
        .map(|n| n.parse().expect("a row count"))
        .max()
        .unwrap_or(0);
    let rows = host_sqlite3(
        &dir,
        &img,
        "bench.db",
        "PRAGMA integrity_check; SELECT count(*) FROM tab",
    );
    assert_eq!(rows[0], "ok", "{out:?}");
    let count: u64 = rows[1].parse().expect("a row count");
    assert!(
        count >= committed,
        "{count} rows, {committed} reported committed\n{out:?}"
    );
}

/// The symbols the SQLite object may leave undefined, and who provides each.
const ALLOWED_UNDEFINED: [&str; 17] = [
    // compiler_builtins (linked into every Rust no_std binary).
    "memcmp",
    "memcpy",
    "memmove",
    "memset",
    // tinyrlibc, features listed in apps/sqlite/Cargo.toml.
    "memchr",
    "strchr",
    "strcmp",
    "strcspn",
    "strlen",
    "strncmp",
    "strrchr",
    "strspn",
    // tinyrlibc's `alloc` feature, on the image's global allocator.
    "malloc",
    "free",
    "realloc",
    // The app's OS layer (SQLITE_OS_OTHER).
    "sqlite3_os_init",
    "sqlite3_os_end",
];

/// The libsqlite3 archive of the last guest build: the newest one under the guest's
/// build directories (old builds with other hashes may linger).
fn sqlite_archive() -> PathBuf {
    let build = repo_root().join("guest-kernel/target/x86_64-unknown-none/release/build");
    let entries = std::fs::read_dir(&build).unwrap_or_else(|e| {
        panic!(
            "cannot list {} ({e}): run scripts/build first",
            build.display()
        )
    });
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("libsqlite3-sys-")
        })
        .map(|e| e.path().join("out/libsqlite3.a"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no libsqlite3-sys-*/out/libsqlite3.a under {}: run scripts/build first",
                build.display()
            )
        })
}

/// Any libm or libc function outside the list would bind to something unexpected (or
/// to compiler_builtins' soft-float version, trap 1), so the list only changes on
/// purpose.
#[test]
fn sqlite_object_needs_only_allowed_symbols() {
    require_tool("nm", "binutils");
    let archive = sqlite_archive();
    let out = run_program("nm", [std::ffi::OsStr::new("-u"), archive.as_os_str()]);
    out.assert_status(0);
    let undefined: BTreeSet<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("U "))
        .collect();
    let allowed: BTreeSet<&str> = ALLOWED_UNDEFINED.into_iter().collect();
    let extra: Vec<&str> = undefined.difference(&allowed).copied().collect();
    assert!(
        extra.is_empty(),
        "{} needs symbols outside the allowlist: {extra:?}\n{out:?}",
        archive.display()
    );
    // The check saw the real object: SQLite's OS hooks are always undefined in it.
    assert!(
        undefined.contains("sqlite3_os_init") && undefined.contains("malloc"),
        "nm found none of the expected symbols\n{out:?}"
    );
}
