//! `flexos-explore`: measure every placement of an image's components under a
//! workload, order them by safety, and name the safest within a performance budget.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use flexos_explore::error::Fail;
use flexos_explore::filter::Filter;
use flexos_explore::partition::Placement;
use flexos_explore::process::{install_stop_handlers, stop_requested};
use flexos_explore::report::{self, figure, Context};
use flexos_explore::search::{explore, Exploration, Measure, Metric, Progress, Settings};
use flexos_explore::workload::{self, Knobs, Place, Target, Workload};
use flexos_image::{Catalog, Image};

const AFTER_HELP: &str = "\
Placement specs name compartments with '|' and components with ',': 'app|net,netdev'
puts app alone and net with netdev. NONE (every component together) is always measured:
it is the baseline every figure is divided by.

Examples:
  flexos-explore --workload iperf                      every placement, 3 runs each
  flexos-explore --workload sqlite --budget 0.5
  flexos-explore --workload gatebench --prune --calls 2000
  flexos-explore --workload iperf --only 'app|net,netdev' --only 'app|net|netdev'
  flexos-explore --workload gatebench --together bench,relay1 --max-compartments 3

Output: a progress line per run on stderr with the time left; the table and summary on
stdout; DIR/<workload>.json (every run) and DIR/<workload>.svg (the Hasse diagram).

Exit status: 0; 1 if a placement failed (the rest are still reported) or the NONE
baseline failed; 64 usage error; 65/66 bad or missing image or monitor; 69 the host
lacks what the workload needs (a tool, a namespace); 73 the output or scratch directory
cannot be written; 130/143 after SIGINT/SIGTERM (what was started is stopped and the
namespace or disk removed).";

/// Measure every placement of an image's components into compartments under one
/// workload, order them by safety (P is safer than Q when P refines Q), and name the
/// safest placements whose performance stays within a budget of NONE's (FlexOS
/// ASPLOS'22, Figures 6 and 8).
#[derive(Parser, Debug)]
#[command(name = "flexos-explore", version, after_help = AFTER_HELP)]
struct Cli {
    /// The workload: iperf (Gbit/s at one receive size), sqlite (seconds for N
    /// inserts), gatebench (ns per gate-chain call), redis (requests/s of
    /// redis-benchmark -c 30 -P 16 -t get) or nginx (requests/s of wrk -t 1 -c 30 on
    /// the index page).
    #[arg(short, long)]
    workload: String,
    /// The image (default: target/images/<workload>.elf next to this binary).
    #[arg(long)]
    image: Option<PathBuf>,
    /// The monitor (default: flexos-vmm next to this binary).
    #[arg(long)]
    vmm: Option<PathBuf>,
    /// Runs per placement.
    #[arg(short, long, default_value_t = 3)]
    reps: usize,
    /// Fraction of NONE's performance a placement must keep to be within budget.
    #[arg(short, long, default_value_t = 0.8)]
    budget: f64,
    /// Skip placements that refine one already over budget (FlexOS's hypothesis: a
    /// refinement is never faster).
    #[arg(long)]
    prune: bool,
    /// Explore twice, every placement then with --prune, and report whether pruning
    /// measured fewer placements and named the same safest set.
    #[arg(long, conflicts_with = "prune")]
    compare_prune: bool,
    /// Measure only these placements (repeatable; NONE is added).
    #[arg(long = "only", value_name = "SPEC")]
    only: Vec<String>,
    /// Only placements of at most K compartments.
    #[arg(long, value_name = "K")]
    max_compartments: Option<usize>,
    /// Only placements that keep these components in one compartment (repeatable).
    #[arg(long, value_name = "A,B,..")]
    together: Vec<String>,
    /// Only placements that keep these components in different compartments
    /// (repeatable).
    #[arg(long, value_name = "A,B,..")]
    apart: Vec<String>,
    /// Where the JSON and SVG go (default: target/explore next to this binary's
    /// target directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A guest argument added to every run (repeatable), e.g. gate.spin=5000 to see a
    /// kernel knob's effect on every placement.
    #[arg(long = "guest-arg", value_name = "ARG")]
    guest_args: Vec<String>,
    /// List the placements the filters select, and the runs they would take, then exit.
    #[arg(long)]
    dry_run: bool,
    /// iperf: the guest's receive size in bytes (default 1024).
    #[arg(long)]
    recv: Option<u32>,
    /// iperf: seconds the client streams per run (default 3); nginx: seconds wrk runs
    /// (default 10).
    #[arg(long)]
    seconds: Option<u32>,
    /// sqlite: rows inserted per run (default 5000).
    #[arg(long)]
    inserts: Option<u32>,
    /// gatebench: timed calls per run (default 20000; a run also ends after 5 s).
    #[arg(long)]
    calls: Option<u32>,
    /// gatebench: the case measured (default gate-chain).
    #[arg(long)]
    case: Option<String>,
    /// redis: the redis-benchmark test, get or set (default get).
    #[arg(long)]
    op: Option<String>,
    /// redis: requests in flight per client, redis-benchmark's -P (default 16).
    #[arg(long)]
    pipeline: Option<u32>,
    /// redis: requests per run, redis-benchmark's -n (default 200000).
    #[arg(long)]
    requests: Option<u32>,
    /// nginx: the page wrk fetches, index (612 bytes) or 64k (default index).
    #[arg(long)]
    page: Option<String>,
}

/// Writes to stdout; a closed stdout (a reader that went away) loses the text, never
/// the exploration's results or its exit status.
fn write_out(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// Writes to stderr, ignoring a closed stderr as [`write_out`] does.
fn write_err(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// `println!` through [`write_out`].
macro_rules! say_out {
    ($($arg:tt)*) => { write_out(&format!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` through [`write_err`].
macro_rules! say_err {
    ($($arg:tt)*) => { write_err(&format!("{}\n", format_args!($($arg)*))) };
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
}

fn main() -> ExitCode {
    // Usage errors exit 64 like the monitor's (clap's own default is 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    install_stop_handlers();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            say_err!("flexos-explore: error: {fail}");
            ExitCode::from(u8::try_from(fail.exit_code()).unwrap_or(1))
        }
    }
}

/// `target/release` when this binary runs from there.
fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A new directory `<root>/flexos-explore-<pid>.XXXXXX`, mode 0700, that did not exist
/// before (mkdtemp): a directory someone planted at a predictable name, with links to
/// files they want overwritten where placement.toml or disk.img go, is never used.
fn private_scratch(root: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let template = root.join(format!("flexos-explore-{}.XXXXXX", std::process::id()));
    let mut bytes = template.into_os_string().into_vec();
    bytes.push(0);
    // SAFETY: `bytes` is a NUL-terminated, writable template ending in XXXXXX, which
    // mkdtemp overwrites in place; it lives until the call returns.
    let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    bytes.pop();
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// Measures placements with the workload, one placement file per run in the scratch
/// directory; a stop request cleans up and exits.
struct Runner<'a> {
    workload: Box<dyn Workload>,
    target: Target,
    names: &'a [String],
    catalog_check: Catalog,
}

impl Runner<'_> {
    fn cleanup(&mut self) {
        self.workload.cleanup();
        let _ = std::fs::remove_dir_all(&self.target.scratch);
    }

    fn stop_if_asked(&mut self) {
        if let Some(sig) = stop_requested() {
            self.cleanup();
            let name = if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            say_err!("flexos-explore: stopped by {name}: the running monitor was stopped and what the exploration made was removed");
            std::process::exit(128 + sig);
        }
    }
}

impl Measure for Runner<'_> {
    fn measure(&mut self, placement: &Placement, _rep: usize) -> Result<f64, String> {
        self.stop_if_asked();
        let text = placement.to_config(self.names);
        let config = self.target.scratch.join("placement.toml");
        // The monitor's own validation, before the run: a generated file it would
        // reject is a bug here, not a slow placement.
        self.catalog_check
            .placement_from_config(&config, &text)
            .map_err(|e| format!("generated an invalid placement file: {e}"))?;
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let result = self.workload.run(&self.target, &Place::Config(config));
        self.stop_if_asked();
        result
    }
}

fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

fn run(cli: Cli) -> Result<u8, Fail> {
    let knobs = Knobs {
        recv: cli.recv,
        seconds: cli.seconds,
        inserts: cli.inserts,
        calls: cli.calls,
        case: cli.case.clone(),
        op: cli.op.clone(),
        pipeline: cli.pipeline,
        requests: cli.requests,
        page: cli.page.clone(),
    };
    let mut workload = workload::by_name(&cli.workload, &knobs).map_err(usage)?;
    if !(1..=100).contains(&cli.reps) {
        return Err(usage(format!("--reps {}: want 1..=100", cli.reps)));
    }
    if !(cli.budget > 0.0 && cli.budget <= 10.0) {
        return Err(usage(format!(
            "--budget {}: want a fraction of NONE's performance, e.g. 0.8",
            cli.budget
        )));
    }
    let bin = exe_dir();
    let image = cli.image.clone().unwrap_or_else(|| {
        bin.parent()
            .unwrap_or(&bin)
            .join("images")
            .join(workload.default_image())
    });
    // The component table, read as the monitor reads it; it also checks every
    // generated placement file before its run.
    let catalog = Catalog::from_image(&Image::open(&image, u64::MAX)?)?;
    let names = catalog.components.clone();
    let filter = Filter {
        only: cli.only.clone(),
        max_compartments: cli.max_compartments,
        together: cli.together.clone(),
        apart: cli.apart.clone(),
    };
    let placements = filter.select(&names).map_err(usage)?;
    if cli.dry_run {
        for p in &placements {
            say_out!("{} compartment(s): {}", p.compartments(), p.label(&names));
        }
        say_out!(
            "{} placement(s) x {} run(s) = {} runs{}",
            placements.len(),
            cli.reps,
            placements.len() * cli.reps,
            if cli.prune {
                " at most (pruning may skip some)"
            } else {
                ""
            }
        );
        return Ok(0);
    }
    let vmm = cli.vmm.clone().unwrap_or_else(|| bin.join("flexos-vmm"));
    if !vmm.is_file() {
        return Err(Fail::NoMonitor(vmm));
    }
    let out_dir = cli
        .out
        .clone()
        .unwrap_or_else(|| bin.parent().unwrap_or(&bin).join("explore"));
    std::fs::create_dir_all(&out_dir).map_err(|source| Fail::CannotCreate {
        what: "create",
        path: out_dir.clone(),
        source,
    })?;

    let scratch_root = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let scratch = private_scratch(&scratch_root).map_err(|source| Fail::CannotCreate {
        what: "create a scratch directory in",
        path: scratch_root.clone(),
        source,
    })?;
    let target = Target {
        vmm,
        image: image.clone(),
        scratch,
        vmm_opts: Vec::new(),
        wrapper: Vec::new(),
        guest_args: cli.guest_args.clone(),
    };
    let metric = workload.metric();
    let describe = if cli.guest_args.is_empty() {
        workload.describe()
    } else {
        format!(
            "{}; every run with guest arguments {}",
            workload.describe(),
            cli.guest_args.join(" ")
        )
    };
    let name = workload.name();
    say_err!(
        "flexos-explore: {name} on {} (components {}): {} placement(s) x {} run(s), budget {:.0}% of NONE{}",
        image.display(),
        names.join(", "),
        placements.len(),
        cli.reps,
        cli.budget * 100.0,
        if cli.compare_prune {
            ", twice: every placement, then pruning"
        } else if cli.prune {
            ", pruning"
        } else {
            ""
        }
    );
    say_err!("flexos-explore: one run: {describe}");
    if let Err(e) = workload.prepare(&target) {
        workload.cleanup();
        let _ = std::fs::remove_dir_all(&target.scratch);
        return Err(Fail::Unavailable(e));
    }
    let mut runner = Runner {
        workload,
        target,
        names: &names,
        catalog_check: catalog,
    };
    let passes: &[bool] = if cli.compare_prune {
        &[false, true]
    } else if cli.prune {
        &[true]
    } else {
        &[false]
    };
    let mut done = Vec::new();
    for &prune in passes {
        if cli.compare_prune {
            say_out!(
                "== {} ==",
                if prune {
                    "with --prune"
                } else {
                    "every placement"
                }
            );
        }
        let pass = Pass {
            cli: &cli,
            names: &names,
            image: &image,
            out_dir: &out_dir,
            describe: &describe,
            name,
            metric,
            prune,
            suffix: if cli.compare_prune && prune {
                "-pruned"
            } else {
                ""
            },
        };
        match pass.run(&mut runner, placements.clone()) {
            Ok(ex) => done.push(ex),
            Err(e) => {
                runner.cleanup();
                return Err(e);
            }
        }
    }
    runner.cleanup();
    if let [full, pruned] = &done[..] {
        say_out!("{}", report::prune_check(full, pruned, &names));
    }
    let failed = done
        .iter()
        .flat_map(|ex| &ex.entries)
        .any(|e| matches!(e.outcome, flexos_explore::search::Outcome::Failed(_)));
    Ok(u8::from(failed))
}

/// One exploration over the selected placements, reported and written out.
struct Pass<'a> {
    cli: &'a Cli,
    names: &'a [String],
    image: &'a Path,
    out_dir: &'a Path,
    describe: &'a str,
    name: &'static str,
    metric: Metric,
    prune: bool,
    /// Added to the output files' stem (`<workload><suffix>.json`).
    suffix: &'static str,
}

impl Pass<'_> {
    fn run(
        &self,
        runner: &mut Runner<'_>,
        placements: Vec<Placement>,
    ) -> Result<Exploration, Fail> {
        let (names, reps, metric, prune) = (self.names, self.cli.reps, self.metric, self.prune);
        let started = Instant::now();
        let settings = Settings {
            metric,
            reps,
            budget: self.cli.budget,
            prune: self.prune,
        };
        let progress = |p: Progress<'_>| {
            let elapsed = started.elapsed().as_secs_f64();
            let left = elapsed / p.done as f64 * p.left as f64;
            let what = match p.result {
                Ok(v) => format!("{} {}", figure(*v), metric.unit),
                Err(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
            };
            // With pruning the runs left are an upper bound: a level's results may
            // prune later placements.
            say_err!(
                "flexos-explore: [{}/{}{}] {} run {}/{reps}: {what}  ({} elapsed, ~{} left)",
                p.done,
                if prune { "<=" } else { "" },
                p.done + p.left,
                p.placement.label(names),
                p.rep + 1,
                clock(elapsed),
                clock(left)
            );
        };
        let ex = explore(placements, settings, runner, progress, names)?;
        let image_text = self.image.display().to_string();
        let cx = Context {
            workload: self.name,
            describe: self.describe,
            image: &image_text,
            names,
            metric,
            seconds: started.elapsed().as_secs_f64(),
        };
        write_out(&report::table(&ex, &cx));
        let stem = format!("{}{}", self.name, self.suffix);
        let json_path = self.out_dir.join(format!("{stem}.json"));
        let svg_path = self.out_dir.join(format!("{stem}.svg"));
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|source| Fail::CannotCreate {
                what: "write",
                path: path.to_path_buf(),
                source,
            })
        };
        let json = serde_json::to_string_pretty(&report::json(&ex, &cx)).expect("plain values");
        write(&json_path, json + "\n")?;
        write(&svg_path, report::hasse_svg(&ex, &cx))?;
        say_out!(
            "took {}; wrote {} and {}",
            clock(cx.seconds),
            json_path.display(),
            svg_path.display()
        );
        Ok(ex)
    }
}
