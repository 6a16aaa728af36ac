//! The benchmark presets of `flexos-bench`: each one a list of cases for the
//! [`measure`](crate::measure) engine (placements under a workload, host baselines
//! measured in the same run), and how its table, goals, JSON and SVG read.
//!
//! - [`gates`]: FlexOS Figure 11, gate latency under NONE, EPT2, EPT3, EPT4;
//! - [`sqlite`]: FlexOS Figure 10, autocommit INSERTs on a disk and on ramfs;
//! - [`iperf`]: FlexOS Figure 9, a stock iperf2 client over a sweep of receive sizes;
//! - [`redis`]: FlexOS Figure 6 (top), redis-benchmark against unmodified Redis;
//! - [`nginx`]: FlexOS Figure 6 (bottom), wrk against unmodified Nginx;
//! - [`apps`]: FlexOS Figure 7, both under the same placements, each / its NONE;
//! - [`boot`]: boot phases (`--timings`) against spawning a process;
//! - [`handoff`]: what a hand-off between threads, VMs and the monitor costs;
//! - [`policy`]: the thread policy's candidates on the workloads they are for.

pub mod apps;
pub mod boot;
pub mod gates;
pub mod handoff;
pub mod iperf;
pub mod nginx;
pub mod policy;
pub mod redis;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::process;

/// Where the presets find the monitor, the images and the host baselines, and where
/// they write.
#[derive(Clone, Debug)]
pub struct Env {
    /// `target/release`: flexos-vmm, host-pingpong, host-handoff, tapfwd.
    pub bin: PathBuf,
    /// `target/images`.
    pub images: PathBuf,
    /// `target/bench` (JSON, SVG).
    pub out: PathBuf,
    /// The repository (bench/pvm-wake).
    pub root: PathBuf,
    /// Scratch files (disk images, databases): a private directory on /dev/shm.
    pub scratch: PathBuf,
}

impl Env {
    pub fn vmm(&self) -> PathBuf {
        self.bin.join("flexos-vmm")
    }
    pub fn image(&self, name: &str) -> PathBuf {
        self.images.join(name)
    }
    /// Monitor options for `--tune`.
    pub fn tune_opts(tune: Option<&str>) -> Vec<String> {
        tune.map(|t| vec!["--tune".to_string(), t.to_string()])
            .unwrap_or_default()
    }
    /// A [`Target`](crate::workload::Target) for `image` with the `--tune` candidate.
    pub fn target(&self, image: &str, tune: Option<&str>) -> crate::workload::Target {
        crate::workload::Target {
            vmm: self.vmm(),
            image: self.image(image),
            scratch: self.scratch.clone(),
            vmm_opts: Env::tune_opts(tune),
            wrapper: Vec::new(),
            guest_args: Vec::new(),
        }
    }
}

/// Runs a host program to its end; its stdout lines, or an error with its output.
pub fn host_run(mut cmd: Command, what: &str, timeout: Duration) -> Result<Vec<String>, String> {
    cmd.stdin(Stdio::null());
    let done = process::run(cmd, what, timeout).map_err(|e| e.to_string())?;
    if done.status.success() {
        Ok(done.stdout)
    } else {
        Err(format!("{what} failed ({})\n{}", done.status, done.tail(8)))
    }
}

/// Every JSON object in `lines` whose `"bench"` is `bench` (console prefixes skipped).
pub fn json_lines(lines: &[String], bench: &str) -> Vec<Value> {
    let tag = format!("{{\"bench\":\"{bench}\"");
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(&l[l.find(&tag)?..]).ok())
        .collect()
}

/// A comma-separated list of numbers, each checked by `ok`.
pub fn number_list(text: &str, what: &str, ok: impl Fn(u32) -> bool) -> Result<Vec<u32>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| ok(n))
                .ok_or_else(|| format!("{what}: '{s}' is not one of the allowed values"))
        })
        .collect()
}

/// The options every server preset (redis, nginx) shares: which splits, the Linux
/// baseline, rounds, load and a thread-policy candidate.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// Comma-separated subset of 1,2,3; empty for the baseline only.
    #[arg(long, default_value = "1,2,3")]
    pub compartments: String,
    /// Guest runs only (no Linux server).
    #[arg(long)]
    pub no_baseline: bool,
    /// Runs of every point (the table shows their median).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Run everything again beside N busy processes and report slowdowns.
    #[arg(long, default_value_t = 0)]
    pub load: usize,
    /// Passed to the monitor as --tune (a thread-policy candidate).
    #[arg(long)]
    pub tune: Option<String>,
}

/// One goal's line under a table: `  NAME: A/Bx (goal WANTx) MET`, or nothing when a
/// side was not measured.
pub fn goal_line(name: &str, a: Option<f64>, b: Option<f64>, want: f64) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!(
            "  {name}: {:.2}x (goal {want}x) {}\n",
            a / b,
            met(a / b >= want)
        ),
        _ => String::new(),
    }
}

/// `a / b` as `1.23x`, or `-` when a side was not measured.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// One JSON row of a requests/s table: `{column: {"rps": median, "runs": [...]}}` for
/// each column measured, its key made by `key`.
pub fn rps_row(
    out: &crate::measure::Outcome,
    columns: &[String],
    key: impl Fn(&str) -> String,
) -> Value {
    let mut row = serde_json::Map::new();
    for col in columns {
        if let Some(s) = out.get(&key(col)) {
            row.insert(
                col.clone(),
                serde_json::json!({"rps": s.median(), "runs": s.samples}),
            );
        }
    }
    Value::Object(row)
}

/// Writes `NAME.json` and `NAME.svg` into the output directory and says where.
pub fn write_outputs(env: &Env, name: &str, js: &Value, svg: &str) -> Result<(), String> {
    let (json_name, svg_name) = (format!("{name}.json"), format!("{name}.svg"));
    crate::measure::write_json(&env.out, &json_name, js)?;
    crate::measure::write_file(&env.out, &svg_name, svg)?;
    println!(
        "\nwrote {} and {}",
        shown(&env.out.join(json_name)),
        shown(&env.out.join(svg_name))
    );
    Ok(())
}

/// The compartments of an "N comp" column (1 for anything else).
pub fn comps_of(col: &str) -> u32 {
    col.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// `MET` or `NOT MET`.
pub fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

/// A path relative to the working directory when it is under it (progress lines a
/// reader can paste).
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

/// The policy lines under a table: `  key: text` for each (key, monitor arguments).
pub fn policies(
    vmm: &Path,
    cases: &[(String, Vec<String>)],
) -> Result<(String, serde_json::Map<String, Value>), String> {
    let mut text = String::from("\nthe monitor's thread policy (flexos-vmm --print-policy):\n");
    let mut js = serde_json::Map::new();
    for (key, args) in cases {
        let (line, v) = crate::measure::policy(vmm, args)?;
        text.push_str(&format!("  {key}: {line}\n"));
        js.insert(key.clone(), serde_json::json!({"text": line, "json": v}));
    }
    Ok((text, js))
}

/// Two fresh namespaces joined by a veth pair for a host baseline: the client's
/// (10.0.0.1) and the server's (the guest's address, 10.0.0.2, so clients need not
/// know which they talk to). Both are removed when dropped.
pub fn veth_pair() -> Result<(flexos_netns::NetNs, flexos_netns::NetNs), String> {
    use flexos_netns::{NetNs, GUEST_IP};
    let c = NetNs::unique("c").map_err(|e| e.to_string())?;
    let s = NetNs::unique("s").map_err(|e| e.to_string())?;
    c.add_veth("fxv0", "10.0.0.1/24", &s, "fxv1", &format!("{GUEST_IP}/24"))
        .map_err(|e| e.to_string())?;
    Ok((c, s))
}

/// The thread policy for each "N comp" column of a network preset: the monitor's
/// command line `-c N --net tap=TAP [--tune T] IMAGE`.
pub fn net_policies(
    target: &crate::workload::Target,
    comps: &[u32],
    tap: &str,
    tune: Option<&str>,
) -> Result<(String, serde_json::Map<String, Value>), String> {
    let cases: Vec<(String, Vec<String>)> = comps
        .iter()
        .map(|c| {
            let mut a = vec![
                "-c".to_string(),
                c.to_string(),
                "--net".into(),
                format!("tap={tap}"),
            ];
            a.extend(Env::tune_opts(tune));
            a.push(target.image.display().to_string());
            (format!("{c} comp"), a)
        })
        .collect();
    policies(&target.vmm, &cases)
}

/// Measures `cases` in rounds (no baseline case) with the engine, then lets the guest
/// workload they share clean up, whatever the outcome.
pub fn run_cases<W: crate::workload::Workload + ?Sized>(
    tag: &str,
    reps: usize,
    load: usize,
    cases: Vec<crate::measure::Case<'_>>,
    guest: &std::rc::Rc<std::cell::RefCell<W>>,
) -> Result<crate::measure::Outcome, String> {
    let mut plan = crate::measure::Plan {
        tag: tag.into(),
        reps,
        baseline: None,
        cases,
        load,
    };
    let out = crate::measure::run(&mut plan);
    drop(plan);
    guest.borrow_mut().cleanup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_json_lines() {
        assert_eq!(number_list("1,2, 3", "--x", |n| n <= 3).unwrap(), [1, 2, 3]);
        assert!(number_list("1,4", "--x", |n| n <= 3).is_err());
        assert!(number_list("", "--x", |_| true).unwrap().is_empty());
        let lines = [
            "[app] {\"bench\":\"gate\",\"case\":\"a\"}".to_string(),
            "x".into(),
        ];
        assert_eq!(json_lines(&lines, "gate").len(), 1);
        assert_eq!(met(true), "MET");
    }
}
