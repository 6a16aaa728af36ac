//! The measurement engine every benchmark preset (`flexos-bench`) runs on: named cases
//! (a placement under a workload, or a host baseline), repetitions interleaved in
//! rounds (the host's load drifts; a case is never measured all in one block), the
//! median and the best run of each, ratios to the baseline measured in the same run,
//! again beside competing busy processes when asked, a text table, JSON and SVG.
//!
//! - [`Case`]: one named measurement, a closure yielding a [`Sample`];
//! - [`workload_cases`]: the cases of a [`Workload`] under a list of placements;
//! - [`run`]: rounds of every case (baseline first in each round) -> [`Outcome`];
//! - [`Table`]: column-aligned text tables;
//! - [`svg`]: bar and line charts;
//! - [`BusyLoad`], [`ThreadSampler`], [`policy`]: competing load, the host cores a
//!   process's threads use, the monitor's thread policy for a command line.

pub mod svg;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::search::median;
pub use crate::workload::Sample;
use crate::workload::{Place, Target, Workload};

/// One named measurement: each call is one run.
pub struct Case<'a> {
    /// Short key (JSON, ratios).
    pub key: String,
    /// What the table calls it.
    pub label: String,
    pub measure: Box<dyn FnMut() -> Result<Sample, String> + 'a>,
}

impl<'a> Case<'a> {
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        measure: impl FnMut() -> Result<Sample, String> + 'a,
    ) -> Case<'a> {
        Case {
            key: key.into(),
            label: label.into(),
            measure: Box::new(measure),
        }
    }
}

/// The cases of `workload` under each named placement; the workload is shared by all
/// of them (prepared once by the caller, cleaned up by the caller).
pub fn workload_cases(
    workload: &Rc<RefCell<Box<dyn Workload>>>,
    target: &Target,
    places: &[(String, Place)],
) -> Vec<Case<'static>> {
    places
        .iter()
        .map(|(label, place)| {
            let (w, target, place) = (Rc::clone(workload), target.clone(), place.clone());
            Case::new(label.clone(), label.clone(), move || {
                w.borrow_mut().run_sample(&target, &place)
            })
        })
        .collect()
}

/// A named placement: "N compartment(s)" is the image's default N-way split, anything
/// else a spec such as `app|net,netdev` over the image's component `names`, written as
/// a placement file under `dir`.
pub fn place(label: &str, names: &[String], dir: &Path) -> Result<Place, String> {
    let words: Vec<&str> = label.split_whitespace().collect();
    if let [n, unit] = words[..] {
        if unit.starts_with("compartment") || unit == "comp" || unit == "c" {
            let n: u32 = n
                .parse()
                .map_err(|_| format!("placement '{label}': not a number of compartments"))?;
            return Ok(Place::Compartments(n));
        }
    }
    let p = crate::partition::Placement::parse(label, names).map_err(|e| e.to_string())?;
    let file = dir.join(format!(
        "place-{}.toml",
        label.replace(['|', ',', ' '], "_")
    ));
    std::fs::write(&file, p.to_config(names))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(Place::Config(file))
}

/// Every run of one case.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub samples: Vec<f64>,
    pub details: Vec<Value>,
}

impl Stats {
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::max)
    }
    /// The best run: the least disturbed by other work on the host.
    pub fn best(&self, higher_is_better: bool) -> f64 {
        if higher_is_better {
            self.max()
        } else {
            self.min()
        }
    }
    /// The run whose figure is the best, with its detail.
    pub fn best_detail(&self, higher_is_better: bool) -> Option<&Value> {
        let best = self.best(higher_is_better);
        let i = self.samples.iter().position(|&s| s == best)?;
        self.details.get(i)
    }
}

/// What [`run`] measures.
pub struct Plan<'a> {
    /// Names the work in progress lines (`flexos-bench sqlite: ...`).
    pub tag: String,
    pub reps: usize,
    /// Measured first in every round; ratios are to its median.
    pub baseline: Option<Case<'a>>,
    pub cases: Vec<Case<'a>>,
    /// Measure everything again beside this many busy processes.
    pub load: usize,
}

/// Every case's runs (and, with a load, the same beside it).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// (key, label) in the plan's order, the baseline first if there was one.
    pub order: Vec<(String, String)>,
    pub baseline: Option<String>,
    pub stats: BTreeMap<String, Stats>,
    pub loaded: Option<Box<Outcome>>,
    pub load: usize,
}

impl Outcome {
    pub fn get(&self, key: &str) -> Option<&Stats> {
        self.stats.get(key)
    }
    pub fn median(&self, key: &str) -> Option<f64> {
        self.get(key).map(Stats::median)
    }
    /// `key`'s median over the baseline's.
    pub fn ratio(&self, key: &str) -> Option<f64> {
        Some(self.median(key)? / self.median(self.baseline.as_deref()?)?)
    }
    /// `a`'s median over `b`'s.
    pub fn ratio_of(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.median(a)? / self.median(b)?)
    }

    /// The JSON: every run, medians, best runs, ratios to the baseline.
    pub fn json(&self, higher_is_better: bool) -> Value {
        let mut cases = serde_json::Map::new();
        for (key, label) in &self.order {
            let s = &self.stats[key];
            cases.insert(
                key.clone(),
                json!({
                    "label": label,
                    "runs": s.samples,
                    "median": s.median(),
                    "best": s.best(higher_is_better),
                    "ratio_to_baseline": self.ratio(key),
                    "details": s.details,
                }),
            );
        }
        let mut v = json!({"baseline": self.baseline, "cases": cases});
        if let Some(loaded) = &self.loaded {
            v["competing_processes"] = json!(self.load);
            v["loaded"] = loaded.json(higher_is_better);
        }
        v
    }

    /// The usual table: case, median, ratio to the baseline, best run, its ratio.
    pub fn table(&self, unit: &str, higher_is_better: bool, decimals: usize) -> String {
        let mut t = Table::new(&[
            "case",
            &format!("median {unit}"),
            "ratio",
            &format!("best {unit}"),
            "ratio",
        ]);
        let base = self.baseline.as_deref().and_then(|b| self.get(b));
        for (key, label) in &self.order {
            let s = &self.stats[key];
            let (m, b) = (s.median(), s.best(higher_is_better));
            let ratio = |v: f64, of: f64| format!("{:.2}x", v / of);
            let (rm, rb) = match base {
                Some(_) if Some(key.as_str()) == self.baseline.as_deref() => {
                    ("(baseline)".to_string(), "(baseline)".to_string())
                }
                Some(base) => (
                    ratio(m, base.median()),
                    ratio(b, base.best(higher_is_better)),
                ),
                None => (String::new(), String::new()),
            };
            t.row(vec![
                label.clone(),
                format!("{m:.decimals$}"),
                rm,
                format!("{b:.decimals$}"),
                rb,
            ]);
        }
        t.render()
    }

    /// Each case's slowdown beside the busy processes, and its slowdown over the
    /// baseline's (how much more the competition costs it than the host).
    pub fn load_table(&self, higher_is_better: bool) -> Option<String> {
        let loaded = self.loaded.as_ref()?;
        let slow = |q: f64, l: f64| if higher_is_better { q / l } else { l / q };
        let host = self
            .baseline
            .as_deref()
            .and_then(|b| Some(slow(self.median(b)?, loaded.median(b)?)));
        let mut t = Table::new(&["case", "quiet", "loaded", "slowdown", "vs baseline"]);
        for (key, label) in &self.order {
            let (Some(q), Some(l)) = (self.median(key), loaded.median(key)) else {
                continue;
            };
            let s = slow(q, l);
            let rel = match host {
                Some(h) if Some(key.as_str()) != self.baseline.as_deref() => {
                    format!("{:.2}x", s / h)
                }
                _ => String::new(),
            };
            t.row(vec![
                label.clone(),
                format!("{q:.4}"),
                format!("{l:.4}"),
                format!("{s:.2}x"),
                rel,
            ]);
        }
        Some(format!(
            "beside {} busy process(es): slowdown (median, quiet against loaded)\n{}",
            self.load,
            t.render()
        ))
    }
}

/// Prints a progress line on stderr.
pub fn progress(tag: &str, msg: &str) {
    // A closed stderr loses progress lines, nothing else.
    let _ = writeln!(std::io::stderr(), "{tag}: {msg}");
}

/// Runs the plan: `reps` rounds, each the baseline then every case in order; then, with
/// a load, all of it again beside the busy processes.
pub fn run(plan: &mut Plan<'_>) -> Result<Outcome, String> {
    let mut out = rounds(plan, "")?;
    if plan.load > 0 {
        let _busy = BusyLoad::start(plan.load)?;
        let tag = format!("beside {} busy: ", plan.load);
        out.loaded = Some(Box::new(rounds(plan, &tag)?));
        out.load = plan.load;
    }
    Ok(out)
}

fn rounds(plan: &mut Plan<'_>, prefix: &str) -> Result<Outcome, String> {
    let mut out = Outcome {
        baseline: plan.baseline.as_ref().map(|b| b.key.clone()),
        ..Outcome::default()
    };
    let reps = plan.reps.max(1);
    let tag = plan.tag.clone();
    let cases: Vec<&mut Case<'_>> = plan
        .baseline
        .iter_mut()
        .chain(plan.cases.iter_mut())
        .collect();
    out.order = cases
        .iter()
        .map(|c| (c.key.clone(), c.label.clone()))
        .collect();
    let mut cases = cases;
    for r in 0..reps {
        for case in cases.iter_mut() {
            if let Some(sig) = crate::process::stop_requested() {
                return Err(format!("stopped by signal {sig}"));
            }
            progress(
                &tag,
                &format!("{prefix}round {}/{reps}: {}", r + 1, case.label),
            );
            let sample = (case.measure)().map_err(|e| format!("{}: {e}", case.label))?;
            let stats = out.stats.entry(case.key.clone()).or_default();
            stats.samples.push(sample.value);
            stats.details.push(sample.detail);
        }
    }
    Ok(out)
}

/// `n` busy processes (a shell loop each, niceness 0) until dropped: the runs and the
/// host baselines beside the same competition.
pub struct BusyLoad {
    children: Vec<Child>,
}

impl BusyLoad {
    pub fn start(n: usize) -> Result<BusyLoad, String> {
        let mut load = BusyLoad {
            children: Vec::new(),
        };
        for _ in 0..n {
            let child = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start a busy process: {e}"))?;
            load.children.push(child);
        }
        Ok(load)
    }
}

impl Drop for BusyLoad {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// The thread policy the monitor picks for `args` (`flexos-vmm --print-policy`): its
/// text line and its JSON.
pub fn policy<S: AsRef<std::ffi::OsStr>>(
    vmm: &Path,
    args: &[S],
) -> Result<(String, Value), String> {
    let out = Command::new(vmm)
        .arg("--print-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", vmm.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    match (out.status.success(), lines.next(), lines.next()) {
        (true, Some(text), Some(js)) => Ok((
            text.to_string(),
            serde_json::from_str(js).map_err(|e| format!("--print-policy JSON: {e}"))?,
        )),
        _ => Err(format!(
            "`flexos-vmm --print-policy` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// `{thread name#tid: user+system clock ticks}` of process `pid`.
fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 0; utime and stime are 11 and 12.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(
            format!("{name}#{}", task.file_name().to_string_lossy()),
            ticks(11) + ticks(12),
        );
    }
    out
}

/// The span between the first and the last sample, and the two samples.
type Span = Option<(Duration, BTreeMap<String, u64>, BTreeMap<String, u64>)>;

/// Samples a process's per-thread CPU time every 0.2 s while it runs, keeping the
/// first and the latest sample: the host cores each thread used over that span.
pub struct ThreadSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Span>,
}

impl ThreadSampler {
    pub fn start(pid: u32) -> ThreadSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut first: Option<(Instant, BTreeMap<String, u64>)> = None;
            let mut last = None;
            while !flag.load(Ordering::Relaxed) {
                let ticks = thread_ticks(pid);
                if !ticks.is_empty() {
                    let now = Instant::now();
                    if first.is_none() {
                        first = Some((now, ticks.clone()));
                    }
                    last = Some((now, ticks));
                }
                std::thread::park_timeout(Duration::from_millis(200));
            }
            let (t0, a) = first?;
            let (t1, b) = last?;
            Some((t1 - t0, a, b))
        });
        ThreadSampler { stop, handle }
    }

    /// Cores used per thread name (threads of one name summed), 0.01 and up.
    pub fn cores(self) -> BTreeMap<String, f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        match self.handle.join() {
            Ok(Some((span, before, after))) if !span.is_zero() => {
                cores_used(&before, &after, span.as_secs_f64())
            }
            _ => BTreeMap::new(),
        }
    }
}

fn cores_used(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    seconds: f64,
) -> BTreeMap<String, f64> {
    // SAFETY: sysconf takes a plain integer and reads nothing else.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut used = BTreeMap::new();
    for (key, &ticks) in after {
        let name = key.split('#').next().unwrap_or(key).to_string();
        let delta =
            ticks.saturating_sub(before.get(key).copied().unwrap_or(0)) as f64 / hz / seconds;
        if delta >= 0.01 {
            let v: &mut f64 = used.entry(name).or_insert(0.0);
            *v = ((*v + delta) * 100.0).round() / 100.0;
        }
    }
    used
}

/// A text table: a header row and rows of cells; the first column left-aligned, the
/// others right-aligned, each as wide as its widest cell.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.head.len();
        let mut width = vec![0; cols];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let c = r.get(i).map(String::as_str).unwrap_or("");
                if i == 0 {
                    let _ = write!(line, "{c:<w$}");
                } else {
                    let _ = write!(line, "  {c:>w$}");
                }
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        s
    }
}

/// Writes `text` to `dir/name`, making `dir`.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes `value` as indented JSON to `dir/name`.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    write_file(dir, name, &text)
}

/// The 1-minute load average (other builds come and go on a shared host).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn rounds_interleave_cases_and_ratios_use_medians() {
        let calls = RefCell::new(Vec::new());
        let n = Cell::new(0.0);
        let mut plan = Plan {
            tag: "test".into(),
            reps: 3,
            baseline: Some(Case::new("host", "host", || {
                calls.borrow_mut().push("host");
                Ok(2.0.into())
            })),
            cases: vec![Case::new("g", "guest", || {
                calls.borrow_mut().push("g");
                n.set(n.get() + 1.0);
                Ok(Sample {
                    value: 2.0 * n.get(),
                    detail: json!({"run": n.get()}),
                })
            })],
            load: 0,
        };
        let out = run(&mut plan).unwrap();
        drop(plan);
        assert_eq!(*calls.borrow(), ["host", "g", "host", "g", "host", "g"]);
        assert_eq!(out.get("g").unwrap().samples, [2.0, 4.0, 6.0]);
        assert_eq!(out.ratio("g"), Some(2.0));
        assert_eq!(out.get("g").unwrap().best(false), 2.0);
        assert_eq!(
            out.get("g").unwrap().best_detail(true),
            Some(&json!({"run": 3.0}))
        );
        let table = out.table("s", false, 2);
        assert!(table.contains("guest"), "{table}");
        assert!(table.contains("2.00x"), "{table}");
        assert!(table.contains("(baseline)"), "{table}");
        let js = out.json(false);
        assert_eq!(js["cases"]["g"]["median"], json!(4.0));
        assert_eq!(js["baseline"], json!("host"));
    }

    #[test]
    fn a_failing_case_names_itself() {
        let mut plan = Plan {
            tag: "test".into(),
            reps: 1,
            baseline: None,
            cases: vec![Case::new("x", "the x case", || Err("boom".into()))],
            load: 0,
        };
        assert_eq!(run(&mut plan).unwrap_err(), "the x case: boom");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut t = Table::new(&["case", "s"]);
        t.row(vec!["a long name".into(), "1.5".into()]);
        t.row(vec!["b".into(), "10.25".into()]);
        assert_eq!(
            t.render(),
            "case             s\na long name    1.5\nb            10.25\n"
        );
    }

    #[test]
    fn placements_by_count_or_spec() {
        let names: Vec<String> = ["app", "net", "netdev"].map(String::from).to_vec();
        let dir = std::env::temp_dir();
        assert_eq!(
            place("2 compartments", &names, &dir).unwrap(),
            Place::Compartments(2)
        );
        assert_eq!(
            place("1 compartment", &names, &dir).unwrap(),
            Place::Compartments(1)
        );
        let Place::Config(file) = place("app|net,netdev", &names, &dir).unwrap() else {
            panic!("a spec is a placement file")
        };
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("components = [\"net\", \"netdev\"]"),
            "{text}"
        );
        let _ = std::fs::remove_file(file);
        assert!(place("app|nosuch", &names, &dir).is_err());
    }

    #[test]
    fn cores_are_ticks_over_seconds() {
        let before = BTreeMap::from([("vcpu0#1".to_string(), 0), ("vcpu0#2".to_string(), 0)]);
        // SAFETY: sysconf takes a plain integer.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let after = BTreeMap::from([("vcpu0#1".to_string(), hz), ("vcpu0#2".to_string(), hz / 2)]);
        assert_eq!(cores_used(&before, &after, 2.0)["vcpu0"], 0.75);
    }

    #[test]
    fn the_busy_load_goes_with_its_guard() {
        let load = BusyLoad::start(1).unwrap();
        let pid = load.children[0].id();
        drop(load);
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
                // Reaped: the pid may have been reused by now, but not by our shell loop.
                !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .contains("while")
            }
        );
    }
}
