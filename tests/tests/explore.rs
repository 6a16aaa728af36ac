//! `flexos-explore` end to end: real explorations of the built images with tiny
//! workloads (every placement of gatebench with and without pruning, iperf in a
//! namespace of its own, sqlite on a fresh disk), a monitor that fails one placement
//! or the baseline, bad input, and signals mid-run.
//!
//! Nothing here asserts a timing. What is asserted is what a user reads: the table's
//! rows, the safest set, the JSON, the SVG, the exit status, and that nothing (monitor,
//! scratch directory, namespace) is left behind.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flexos_e2e::{
    explore_path, require_kvm, require_tool, run_program_for, vmm_path, Background, Outcome,
    TempDir,
};
use serde_json::Value;

/// An exploration of a few dozen short runs; generous for a loaded 2-core host.
const EXPLORE_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `flexos-explore ARGS --out DIR`; returns the outcome and the JSON it wrote for
/// `workload` (Null when it wrote none).
fn explore(args: &[&str], out: &TempDir, workload: &str) -> (Outcome, Value) {
    require_kvm();
    // Built together with the monitor: checks both are fresh.
    vmm_path();
    let program = explore_path();
    let mut all: Vec<&str> = args.to_vec();
    let out_dir = out.path().to_str().expect("temp paths are UTF-8");
    all.extend(["--out", out_dir]);
    let outcome = run_program_for(program.to_str().unwrap(), &all, EXPLORE_TIMEOUT);
    let json = std::fs::read_to_string(out.path().join(format!("{workload}.json")))
        .map(|t| serde_json::from_str(&t).expect("the JSON parses"))
        .unwrap_or(Value::Null);
    (outcome, json)
}

/// The table rows (between the header and the `figure:` line), split on whitespace.
fn rows(out: &Outcome) -> Vec<Vec<String>> {
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("placement "))
        .skip(1)
        .take_while(|l| !l.starts_with("figure:"))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn line_starting<'a>(out: &'a Outcome, prefix: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}\n{out:?}"))
}

fn safest(json: &Value) -> Vec<String> {
    json["safest"]
        .as_array()
        .expect("safest is a list")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Whether any process's command line mentions `needle` (a run's scratch path).
fn process_mentioning(needle: &str) -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        cmd.contains(needle).then_some(cmd)
    })
}

const GATEBENCH_NONE: &str = "bench,callee,relay1,relay2";

#[test]
fn gatebench_every_placement_then_pruned_names_the_same_safest_set() {
    let dir = TempDir::new("explore-gb");
    let args = ["--workload", "gatebench", "--calls", "300", "--reps", "2"];
    let (full, json) = explore(&args, &dir, "gatebench");
    full.assert_status(0);
    let table = rows(&full);
    assert_eq!(table.len(), 15, "{full:?}");
    // NONE first, its own baseline; 7, 6 and 1 placements of 2, 3 and 4 compartments.
    assert_eq!(table[0][0], GATEBENCH_NONE);
    assert!(table[0].contains(&"1.00x".to_string()), "{full:?}");
    let per_count: Vec<usize> = (1..=4)
        .map(|k| table.iter().filter(|r| r[1] == k.to_string()).count())
        .collect();
    assert_eq!(per_count, [1, 7, 6, 1]);
    line_starting(&full, "measured all 15 placements (32 runs)");
    // NONE again at the end, against its first figure.
    assert!(line_starting(&full, "NONE again at the end: ").contains("% from "));
    // A progress line per run, counting to 32: NONE twice more at the end.
    let progress: Vec<&str> = full
        .stderr
        .lines()
        .filter(|l| l.starts_with("flexos-explore: ["))
        .collect();
    assert_eq!(progress.len(), 32, "{full:?}");
    assert!(
        progress[29].starts_with("flexos-explore: [30/32] bench|callee|relay1|relay2 run 2/2: ")
    );
    assert!(
        progress[31].starts_with("flexos-explore: [32/32] bench,callee,relay1,relay2 run 2/2: ")
    );
    assert!(progress[31].ends_with("~0:00 left)"), "{}", progress[31]);
    assert_eq!(json["baseline_after"].as_array().unwrap().len(), 2);

    let placements = json["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 15);
    for p in placements {
        assert_eq!(p["outcome"], "measured", "{p}");
        assert_eq!(p["samples"].as_array().unwrap().len(), 2, "{p}");
        assert!(p["median"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(json["baseline"], GATEBENCH_NONE);
    // Strictly comparable pairs of the partition lattice of 4 elements.
    assert_eq!(json["hypothesis"]["pairs_checked"], 45);
    let svg = std::fs::read_to_string(dir.path().join("gatebench.svg")).unwrap();
    assert_eq!(svg.matches("<rect").count(), 15);
    // Each placement of k compartments has C(k, 2) coarser neighbours: 7 + 18 + 6.
    assert_eq!(svg.matches("<line").count(), 31);
    let full_safest = safest(&json);
    assert!(!full_safest.is_empty());
    let summary = line_starting(&full, "safest within 80% of NONE: ");
    for s in &full_safest {
        assert!(summary.contains(s.as_str()), "{summary}");
    }

    // Both passes in one command: every placement, then pruned.
    let (both, _) = explore(
        &[&args[..], &["--compare-prune"]].concat(),
        &dir,
        "gatebench",
    );
    both.assert_status(0);
    let pjson: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("gatebench-pruned.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pjson["prune"], true);
    assert_eq!(safest(&pjson), full_safest, "{both:?}");
    let measured = pjson["placements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "measured")
        .count();
    assert!(measured < 15, "pruning measured all 15\n{both:?}");
    let saved = pjson["runs_saved"].as_u64().unwrap();
    assert_eq!(saved, (15 - measured as u64) * 2);
    line_starting(
        &both,
        &format!(
            "pruning: measured {measured} of 15 placements ({} runs), saved {saved} runs",
            measured * 2 + 2
        ),
    );
    let check = line_starting(
        &both,
        &format!(
            "pruning check: with --prune measured {measured} of 15 placements ({} runs instead of 32); safest set the same ({})",
            measured * 2 + 2,
            full_safest.join(", ")
        ),
    );
    assert!(check.contains("pairs of the full run"), "{check}");
    for p in pjson["placements"].as_array().unwrap() {
        if p["outcome"] == "pruned" {
            assert_eq!(p["within_budget"], false);
            assert!(p["pruned_by"].is_string(), "{p}");
        }
    }
}

/// A shell script standing in for the monitor: it fails (status 70, one stderr line)
/// when the placement file contains `pattern`, and runs the real monitor otherwise.
fn failing_vmm(dir: &TempDir, pattern: &str) -> PathBuf {
    let script = format!(
        "#!/bin/sh\n\
         if grep -qF '{pattern}' \"$2\"; then echo 'wrapper: this placement crashes' >&2; exit 70; fi\n\
         exec '{}' \"$@\"\n",
        vmm_path().display()
    );
    let path = dir.write("vmm.sh", script.as_bytes());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_placement_that_fails_is_reported_and_the_others_still_measured() {
    let dir = TempDir::new("explore-fail");
    let vmm = failing_vmm(&dir, "components = [\"relay2\"]");
    let (out, json) = explore(
        &[
            "--workload",
            "gatebench",
            "--calls",
            "200",
            "--max-compartments",
            "2",
            "--vmm",
            vmm.to_str().unwrap(),
        ],
        &dir,
        "gatebench",
    );
    out.assert_status(1);
    let table = rows(&out);
    assert_eq!(table.len(), 8, "{out:?}");
    let failed: Vec<&Vec<String>> = table
        .iter()
        .filter(|r| r.contains(&"FAILED".to_string()))
        .collect();
    assert_eq!(failed.len(), 1, "{out:?}");
    assert_eq!(failed[0][0], "bench,callee,relay1|relay2");
    line_starting(
        &out,
        "FAILED bench,callee,relay1|relay2: flexos-vmm exited with exit status: 70",
    );
    assert!(
        out.stdout.contains("wrapper: this placement crashes"),
        "{out:?}"
    );
    // The failed placement ran once; the other seven three times each; NONE again.
    assert_eq!(json["runs"], 1 + 7 * 3 + 3);
    assert_eq!(
        json["placements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["outcome"] == "measured")
            .count(),
        7
    );
}

#[test]
fn a_run_that_reports_an_impossible_figure_fails_its_placement() {
    // A guest's output is input: a "result" of minus five nanoseconds per call (here
    // from a stand-in monitor that exits 0) fails that placement, not the ratios.
    let dir = TempDir::new("explore-lie");
    let script = format!(
        "#!/bin/sh\n\
         if grep -qF 'components = [\"callee\"]' \"$2\"; then\n\
         echo '[bench] {{\"bench\":\"gate\",\"case\":\"gate-chain\",\"ns_median\":-5}}'; exit 0; fi\n\
         exec '{}' \"$@\"\n",
        vmm_path().display()
    );
    let vmm = dir.write("liar.sh", script.as_bytes());
    std::fs::set_permissions(&vmm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, json) = explore(
        &[
            "--workload",
            "gatebench",
            "--calls",
            "200",
            "--reps",
            "1",
            "--only",
            "bench,relay1,relay2|callee",
            "--vmm",
            vmm.to_str().unwrap(),
        ],
        &dir,
        "gatebench",
    );
    out.assert_status(1);
    line_starting(
        &out,
        "FAILED bench,relay1,relay2|callee: gatebench reported a median of -5 ns per call, which no call can take",
    );
    assert_eq!(json["placements"][1]["outcome"], "failed", "{json}");
    assert_eq!(json["placements"][0]["outcome"], "measured", "{json}");
}

#[test]
fn a_baseline_that_fails_ends_the_exploration() {
    let dir = TempDir::new("explore-none");
    let vmm = failing_vmm(
        &dir,
        "components = [\"bench\", \"callee\", \"relay1\", \"relay2\"]",
    );
    let (out, json) = explore(
        &[
            "--workload",
            "gatebench",
            "--calls",
            "200",
            "--vmm",
            vmm.to_str().unwrap(),
        ],
        &dir,
        "gatebench",
    );
    out.assert_status(1);
    assert!(json.is_null(), "no results without a baseline");
    out.assert_stderr_contains(
        "flexos-explore: error: the NONE baseline (bench,callee,relay1,relay2) failed, so nothing can be compared with it: flexos-vmm exited with exit status: 70",
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("flexos-explore: ["))
            .count(),
        1,
        "{out:?}"
    );
}

#[test]
fn iperf_every_placement_in_a_namespace_it_removes() {
    require_tool("iperf", "iperf");
    require_tool("ip", "iproute2");
    let dir = TempDir::new("explore-iperf");
    let (out, json) = explore(
        &["--workload", "iperf", "--reps", "1", "--seconds", "1"],
        &dir,
        "iperf",
    );
    out.assert_status(0);
    let labels: Vec<&str> = json["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["placement"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "app,net,netdev",
            "app,net|netdev",
            "app,netdev|net",
            "app|net,netdev",
            "app|net|netdev"
        ]
    );
    for p in json["placements"].as_array().unwrap() {
        assert_eq!(p["outcome"], "measured", "{p}");
        assert!(p["median"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(json["unit"], "Gbit/s");
    // One run each: no noise estimate, so no verdict on the hypothesis.
    line_starting(
        &out,
        "hypothesis \"a refinement is never faster\": not checked (one run per placement",
    );
    assert_eq!(json["hypothesis"]["pairs_checked"], 0);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !ns.contains("flexos-explore-"),
        "a namespace is left behind:\n{ns}"
    );
}

#[test]
fn nginx_under_wrk_with_its_pages_on_a_read_only_disk() {
    require_tool("wrk", "wrk");
    require_tool("ip", "iproute2");
    let dir = TempDir::new("explore-nginx");
    let (out, json) = explore(
        &[
            "--workload",
            "nginx",
            "--reps",
            "1",
            "--seconds",
            "1",
            "--only",
            "app|net,netdev,vfs,blkdev",
        ],
        &dir,
        "nginx",
    );
    out.assert_status(0);
    let labels: Vec<&str> = json["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["placement"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["app,net,netdev,vfs,blkdev", "app|net,netdev,vfs,blkdev"]
    );
    for p in json["placements"].as_array().unwrap() {
        assert_eq!(p["outcome"], "measured", "{p}");
        assert!(p["median"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(json["unit"], "req/s");
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !ns.contains("flexos-explore-"),
        "a namespace is left behind:\n{ns}"
    );
}

#[test]
fn sqlite_on_a_fresh_disk_per_run() {
    require_tool("mkfs.fat", "dosfstools");
    let dir = TempDir::new("explore-sqlite");
    let (out, json) = explore(
        &[
            "--workload",
            "sqlite",
            "--inserts",
            "50",
            "--reps",
            "2",
            "--only",
            "app|vfs,blkdev",
        ],
        &dir,
        "sqlite",
    );
    out.assert_status(0);
    // Each run creates the table: a disk reused between runs would fail the second
    // ("table tab already exists").
    let table = rows(&out);
    assert_eq!(table.len(), 2, "{out:?}");
    assert_eq!(table[0][0], "app,vfs,blkdev");
    assert_eq!(table[1][0], "app|vfs,blkdev");
    assert_eq!(json["unit"], "s");
    assert_eq!(json["higher_is_better"], false);
    for p in json["placements"].as_array().unwrap() {
        assert_eq!(p["samples"].as_array().unwrap().len(), 2, "{p}");
    }
}

#[test]
fn a_dry_run_lists_what_the_filters_select() {
    let dir = TempDir::new("explore-dry");
    let (out, _) = explore(
        &[
            "--workload",
            "gatebench",
            "--together",
            "bench,relay1",
            "--apart",
            "callee,relay2",
            "--dry-run",
        ],
        &dir,
        "gatebench",
    );
    out.assert_status(0).assert_stdout_lines(&[
        "1 compartment(s): bench,callee,relay1,relay2",
        "2 compartment(s): bench,callee,relay1|relay2",
        "2 compartment(s): bench,relay1,relay2|callee",
        "3 compartment(s): bench,relay1|callee|relay2",
        "4 placement(s) x 3 run(s) = 12 runs",
    ]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = TempDir::new("explore-bad");
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["--workload", "httpd"],
            64,
            "flexos-explore: error: unknown workload 'httpd' (choose iperf, sqlite, gatebench, redis or nginx)",
        ),
        (
            &["--workload", "iperf", "--inserts", "5"],
            64,
            "flexos-explore: error: --inserts does not apply to the iperf workload (it takes --recv, --seconds)",
        ),
        (
            &["--workload", "gatebench", "--only", "bench|callee"],
            64,
            "flexos-explore: error: --only 'bench|callee': component 'relay1' is not placed",
        ),
        (
            &["--workload", "gatebench", "--budget", "0"],
            64,
            "flexos-explore: error: --budget 0: want a fraction of NONE's performance, e.g. 0.8",
        ),
        (
            &["--workload", "gatebench", "--image", "/nonexistent/x.elf"],
            66,
            "flexos-explore: error: image '/nonexistent/x.elf' not found; build the images with scripts/build",
        ),
        (
            &["--workload", "gatebench", "--vmm", "/nonexistent/vmm"],
            66,
            "flexos-explore: error: no monitor at /nonexistent/vmm (run scripts/build, or give --vmm)",
        ),
    ];
    for (args, status, message) in cases {
        let (out, json) = explore(args, &dir, "gatebench");
        out.assert_status(status);
        assert_eq!(out.stderr.trim_end(), message, "{out:?}");
        assert!(json.is_null());
    }
    // A case gatebench does not have, and a component kept apart from itself: usage
    // errors before any run.
    let (out, json) = explore(
        &["--workload", "gatebench", "--case", "chain"],
        &dir,
        "gatebench",
    );
    out.assert_status(64);
    assert!(json.is_null());
    assert_eq!(
        out.stderr.trim_end(),
        "flexos-explore: error: --case chain: gatebench has no such case (cases: function-call, \
         gate-local, gate-remote-0, gate-remote-6, gate-remote-buf64, gate-remote-buf4k, \
         gate-nested, gate-chain)"
    );
    let (out, _) = explore(
        &["--workload", "gatebench", "--apart", "bench,bench"],
        &dir,
        "gatebench",
    );
    out.assert_status(64);
    assert_eq!(
        out.stderr.trim_end(),
        "flexos-explore: error: --apart bench,bench: component 'bench' is named twice"
    );
    // An output directory that cannot be made: 73, before any run.
    let out = run_program_for(
        explore_path().to_str().unwrap(),
        ["--workload", "gatebench", "--out", "/proc/flexos-explore"],
        EXPLORE_TIMEOUT,
    );
    out.assert_status(73);
    out.assert_stderr_contains("flexos-explore: error: cannot create /proc/flexos-explore: ");
    // A host without the workload's tools: 69, naming the package to install.
    let bare = Command::new(explore_path())
        .args(["--workload", "iperf", "--out"])
        .arg(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&bare.stderr).ends_with(
            "flexos-explore: error: `ip` not found: run scripts/setup (installs iproute2)\n"
        ),
        "{}",
        String::from_utf8_lossy(&bare.stderr)
    );
    // A missing --workload is a usage error too (64, as the monitor's).
    let (out, _) = explore(&[], &dir, "gatebench");
    out.assert_status(64);
    // An image that is not an ELF: the monitor's own check and status.
    let not_elf = dir.write("not.elf", b"hello");
    let (out, _) = explore(
        &[
            "--workload",
            "gatebench",
            "--image",
            not_elf.to_str().unwrap(),
        ],
        &dir,
        "gatebench",
    );
    out.assert_status(65);
}

/// Starts an exploration in the background and waits for its first progress line
/// (NONE measured: a monitor of the second placement is starting).
fn background(args: &[&str], out: &TempDir) -> Background {
    require_kvm();
    vmm_path();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--out", out.path().to_str().unwrap()]);
    let run = Background::start_program(&explore_path(), &all, true);
    run.wait_until(
        |l| l.starts_with("flexos-explore: [1/"),
        "the first progress line",
    );
    run
}

/// The scratch directories of the exploration with process id `pid`
/// (`/dev/shm/flexos-explore-<pid>.XXXXXX`).
fn scratches_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("flexos-explore-{pid}.");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect()
}

#[test]
fn a_scratch_directory_planted_at_a_predictable_name_is_never_used() {
    require_kvm();
    require_tool("mkfs.fat", "dosfstools");
    vmm_path();
    let dir = TempDir::new("explore-planted");
    let victim = dir.write("victim", b"root's secret");
    // `exec` keeps the shell's pid, so the planted directory has the name the
    // exploration's pid gave its scratch directory before the fix; every file it
    // writes there is a link to the victim.
    let script = r#"planted="/dev/shm/flexos-explore-$$"
mkdir "$planted" || exit 99
for f in placement.toml template.img disk.img; do ln -s "$1" "$planted/$f" || exit 99; done
exec "$2" --workload sqlite --inserts 20 --reps 1 --max-compartments 1 --out "$3""#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&victim)
        .arg(explore_path())
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let pid: u32 = {
        // The planted directory is left as it was; find it by its links to the victim.
        let planted: Vec<PathBuf> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| std::fs::read_link(p.join("disk.img")).is_ok_and(|target| target == victim))
            .collect();
        assert_eq!(planted.len(), 1, "{planted:?}");
        let name = planted[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let pid = name.trim_start_matches("flexos-explore-").parse().unwrap();
        std::fs::remove_dir_all(&planted[0]).unwrap();
        pid
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's secret");
    assert_eq!(scratches_of(pid), Vec::<PathBuf>::new());
}

#[test]
fn sigterm_stops_the_running_monitor_and_removes_the_scratch() {
    let dir = TempDir::new("explore-term");
    // Long runs: the signal lands while a monitor is running.
    let run = background(
        &[
            "--workload",
            "gatebench",
            "--calls",
            "4000000",
            "--reps",
            "1",
        ],
        &dir,
    );
    let pid = run.pid();
    let (status, rest, _) = run.signal("TERM");
    assert_eq!(status, 143, "{rest:?}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some("flexos-explore: stopped by SIGTERM: the running monitor was stopped and what the exploration made was removed")
    );
    assert_eq!(scratches_of(pid), Vec::<PathBuf>::new(), "left behind");
    let needle = format!("/dev/shm/flexos-explore-{pid}.");
    assert_eq!(
        process_mentioning(&needle),
        None,
        "a monitor is left running"
    );
}

#[test]
fn sigint_mid_iperf_removes_the_namespace() {
    require_tool("iperf", "iperf");
    require_tool("ip", "iproute2");
    let dir = TempDir::new("explore-int");
    let run = background(
        &["--workload", "iperf", "--reps", "1", "--seconds", "1"],
        &dir,
    );
    let pid = run.pid();
    let (status, rest, _) = run.signal("INT");
    assert_eq!(status, 130, "{rest:?}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some("flexos-explore: stopped by SIGINT: the running monitor was stopped and what the exploration made was removed")
    );
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !ns.contains(&format!("flexos-explore-{pid}")),
        "the namespace is left behind:\n{ns}"
    );
    assert_eq!(scratches_of(pid), Vec::<PathBuf>::new());
}

#[test]
fn a_closed_stdout_loses_the_table_not_the_results() {
    require_kvm();
    vmm_path();
    let dir = TempDir::new("explore-pipe");
    // The reader exits at once; the exploration writes its table into a closed pipe.
    let script = "\"$0\" --workload gatebench --calls 100 --reps 1 --max-compartments 1 \
                  --out \"$1\" 2>/dev/null | true; echo \"status ${PIPESTATUS[0]}\"";
    let out = Command::new("bash")
        .args(["-c", script])
        .arg(explore_path())
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "status 0\n");
    let json = std::fs::read_to_string(dir.path().join("gatebench.json")).unwrap();
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["placements"].as_array().unwrap().len(), 1);
}
