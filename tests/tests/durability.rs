//! Durability (issue 10, item 6): the monitor is killed with SIGKILL at a random point
//! of the sqlite `bench` (journal DELETE), five times in a row on one FAT image; after
//! each kill the host's own tools (mtools, sqlite3) must find every database on the image
//! intact and holding at least every row the guest printed as committed.
//!
//! The bench creates its table, so each run writes its own database (`db=runN.db`) on
//! the same image; the earlier databases are checked again after every kill, so a later
//! run that damaged the file system would fail the test too.

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use flexos_e2e::{image, repo_root, require_kvm, require_tool, vmm_path, TempDir};

/// Rows the bench is asked for: far more than it reaches before the kill.
const ROWS: u32 = 20_000;
/// One guest run, from start to the kill, may take this long at most.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A random number in `1..=max`, fresh per call (std's hasher keys are random).
fn random_in(max: u32) -> u32 {
    let r = RandomState::new().hash_one(std::process::id());
    (r % u64::from(max)) as u32 + 1
}

/// Runs `program args`, asserting success; returns stdout.
#[track_caller]
fn tool(program: impl AsRef<OsStr>, args: &[&str]) -> String {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.to_string_lossy()));
    assert!(
        out.status.success(),
        "`{} {}` failed ({}):\n{}{}",
        program.to_string_lossy(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `bench n=ROWS db=<db>` on `disk`, reads its stdout as it arrives, and kills
/// the monitor with SIGKILL right after the `stop_after`-th `committed K` line. Returns
/// the last K printed.
fn bench_until_killed(disk: &Path, db: &str, stop_after: u32) -> u32 {
    let mut child = Command::new(vmm_path())
        .arg("--disk")
        .arg(disk)
        .arg(image("sqlite"))
        .args(["--", "bench", &format!("n={ROWS}"), "journal=delete"])
        .arg(format!("db={db}"))
        .env_remove("RUST_LOG")
        .env_remove("FLEXOS_KVM_DEVICE")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the monitor: {e}"));

    // Lines arrive on a channel from a reader thread, so that the wait has a deadline.
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut seen = Vec::new();
    let mut committed = Vec::new();
    while committed.len() < stop_after as usize {
        match lines.recv_timeout(RUN_TIMEOUT) {
            Ok(line) => {
                // With more than one compartment the console prefixes "[app] ".
                let text = match line.strip_prefix('[') {
                    Some(rest) => rest.split_once("] ").map_or(line.as_str(), |(_, t)| t),
                    None => line.as_str(),
                };
                if let Some(k) = text.strip_prefix("committed ") {
                    committed.push(
                        k.trim()
                            .parse::<u32>()
                            .unwrap_or_else(|e| panic!("bad progress line {line:?}: {e}")),
                    );
                }
                seen.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                let status = match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
                panic!(
                    "{db}: the bench stopped or stalled after {} committed line(s) ({e}; \
                     {status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    committed.len(),
                    seen.join("\n"),
                    stderr_reader.join().unwrap_or_default()
                );
            }
        }
    }
    // Child::kill sends SIGKILL on Unix: no handler in the monitor runs.
    child.kill().expect("the monitor is still running");
    let status = child.wait().expect("wait for the killed monitor");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{db}: the monitor was not killed by SIGKILL ({status})"
    );
    let _ = reader.join();
    let _ = stderr_reader.join();
    *committed.last().expect("at least one committed line")
}

/// Copies `db` (and its hot journal, if the kill left one) off the image with mtools,
/// and asks the host's sqlite3 for the integrity check and the row count.
fn check_on_host(disk: &Path, db: &str, scratch: &TempDir) -> (String, u32) {
    let disk = disk.to_str().expect("UTF-8 temp path");
    let local = scratch.path().join(db);
    let journal = format!("{db}-journal");
    let local_journal = scratch.path().join(&journal);
    for f in [&local, &local_journal] {
        let _ = std::fs::remove_file(f);
    }
    let listing = tool("mdir", &["-b", "-i", disk, "::/"]);
    let has_journal = listing
        .lines()
        .any(|l| l.trim().eq_ignore_ascii_case(&format!("::/{journal}")));
    let local_str = local.to_str().expect("UTF-8 temp path");
    tool("mcopy", &["-i", disk, &format!("::/{db}"), local_str]);
    if has_journal {
        tool(
            "mcopy",
            &[
                "-i",
                disk,
                &format!("::/{journal}"),
                local_journal.to_str().expect("UTF-8 temp path"),
            ],
        );
    }
    let out = tool(
        "sqlite3",
        &[
            "-batch",
            local_str,
            "PRAGMA integrity_check; SELECT count(*) FROM tab;",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{db}: unexpected sqlite3 output:\n{out}");
    let count = lines[1]
        .parse()
        .unwrap_or_else(|e| panic!("{db}: bad count {:?}: {e}", lines[1]));
    (lines[0].to_string(), count)
}

#[test]
fn sigkill_during_the_bench_five_times_loses_no_committed_row() {
    require_kvm();
    for (t, package) in [
        ("mkfs.fat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mdir", "mtools"),
        ("sqlite3", "sqlite3"),
    ] {
        require_tool(t, package);
    }
    let scratch = TempDir::new("durability");
    let disk = scratch.path().join("disk.img");
    tool(
        repo_root().join("scripts/mkdisk"),
        &[disk.to_str().expect("UTF-8 temp path"), "64"],
    );

    let mut committed_by_db: Vec<(String, u32)> = Vec::new();
    for run in 1..=5 {
        let db = format!("run{run}.db");
        let stop_after = random_in(5);
        let committed = bench_until_killed(&disk, &db, stop_after);
        eprintln!("run {run}: killed after {stop_after} committed line(s), last {committed}");
        committed_by_db.push((db, committed));
        // Every database so far, not only this run's: the file system must hold them all.
        for (db, committed) in &committed_by_db {
            let (integrity, count) = check_on_host(&disk, db, &scratch);
            assert_eq!(integrity, "ok", "run {run}: {db} integrity_check");
            assert!(
                count >= *committed,
                "run {run}: {db} holds {count} rows, but the guest printed `committed {committed}`"
            );
            eprintln!("  {db}: integrity ok, {count} rows (committed {committed})");
        }
    }
}
