//! `flexos-bench`: the benchmark presets (FlexOS Figures 9, 10 and 11, boot, hand-offs,
//! the thread policy), each a list of cases for one measurement engine that runs
//! rounds, takes medians, measures the baseline in the same run and writes tables,
//! JSON and SVG. `scripts/bench-*` run it after setup and build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flexos_explore::presets::{self, Env};
use flexos_explore::process::install_stop_handlers;

const AFTER_HELP: &str = "\
Every preset measures its baseline in the same run and prints ratios to it; progress
goes to stderr, tables to stdout, files to --out (default target/bench). The presets
find the monitor and the host baselines next to this binary (target/release) and the
images in target/images. `flexos-bench PRESET --help` lists a preset's options.

Exit status: 0 done; 1 a measurement failed (the message says which case and why);
2 usage error; 130/143 stopped by SIGINT/SIGTERM (what the preset made is removed).";

#[derive(Parser, Debug)]
#[command(name = "flexos-bench", version, about = "Benchmark presets of flexos-vmm, each with its baseline measured in the same run", after_help = AFTER_HELP)]
struct Cli {
    /// Where the JSON and SVG go.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Directory of the guest images.
    #[arg(long, global = true)]
    images: Option<PathBuf>,
    #[command(subcommand)]
    preset: Preset,
}

#[derive(Subcommand, Debug)]
enum Preset {
    /// Gate latency (FlexOS Figure 11), beside the host cache-line ping-pong.
    ///
    /// The host cache-line ping-pong, then every
    /// gatebench case under NONE, EPT2, EPT3, EPT4, in interleaved rounds; the best
    /// median of the rounds, ratios to the ping-pong, this project's goals, FlexOS's
    /// figures. Writes gates.json and gates.svg.
    Gates(presets::gates::Args),
    /// SQLite (FlexOS Figure 10), beside the host's SQLite.
    ///
    /// The host's SQLite (one prepared statement; the
    /// sqlite3 CLI beside it) and the sqlite image in 1, 2, 3 compartments on a disk
    /// and on ramfs, journal DELETE then WAL on /dev/shm, then a durable table on the
    /// real disk; medians, best runs, ratios, goals. Writes sqlite.json and sqlite.svg.
    Sqlite(presets::sqlite::Args),
    /// iPerf (FlexOS Figure 9), beside the host kernel's server.
    ///
    /// A stock iperf2 client into the iperf image in 1, 2, 3
    /// compartments, receive sizes 16 B .. 1 MiB, and into the host kernel's server
    /// over a veth pair and behind two taps joined by tapfwd (plain, TSO), all in
    /// namespaces made and removed by flexos-netns; ratios, goals, host cores per
    /// thread. Writes iperf.json and iperf.svg.
    Iperf(presets::iperf::Args),
    /// Boot time, beside spawning /bin/true.
    ///
    /// hello in 1 compartment and gatebench in 2 with --timings, beside
    /// spawning /bin/true; median, min, max of each phase. Writes boot.json.
    Boot(presets::boot::Args),
    /// Hand-off costs between threads, VMs and the monitor on this host.
    ///
    /// Host threads through an eventfd, a guest's exit and doorbell,
    /// gate round trips where every wait sleeps, the in-kernel wait in a bare KVM
    /// guest (bench/pvm-wake), and the policy the monitor picks. Writes handoff.json.
    Handoff(presets::handoff::Args),
    /// The thread policy's candidates, against the monitor before the policy.
    ///
    /// The candidates (before, the policy, disk in its vCPU, pinning,
    /// no spinning, idle spinners) on sqlite, gatebench's chain and iperf; medians and
    /// ratios to "before". Writes policy.json.
    Policy(presets::policy::Args),
    /// Redis (FlexOS Figure 6, top), beside Linux's redis-server.
    ///
    /// redis-benchmark -c 30 -P 16 and -P 1, GET and SET, into the redis image's
    /// unmodified Redis in 1, 2, 3 compartments and into Debian's redis-server behind
    /// a veth pair; FlexOS's range beside them. Writes redis.json and redis.svg.
    Redis(presets::redis::Args),
    /// Nginx (FlexOS Figure 6, bottom), beside Linux's nginx.
    ///
    /// wrk -t 1 -c 30 on a 612-byte index page and a 64 KiB file, from the nginx
    /// image's unmodified Nginx in 1, 2, 3 compartments and from Debian's nginx (one
    /// process, the same files) behind a veth pair. Writes nginx.json and nginx.svg.
    Nginx(presets::nginx::Args),
    /// Nginx and Redis under the same placements (FlexOS Figure 7).
    ///
    /// Each image's default splits 1-5 (the same placements for both), each app's
    /// throughput normalised to its own NONE. Writes apps.json and apps.svg.
    Apps(presets::apps::Args),
}

/// `target/release` (this binary's directory) and the repository above `target`.
fn locations() -> Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let bin = exe
        .parent()
        .ok_or("this binary has no directory")?
        .to_path_buf();
    let root = bin
        .ancestors()
        .find(|p| p.join("target").is_dir() && p.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((bin, root))
}

/// A private scratch directory on /dev/shm (tmpfs: no real fdatasync), removed at the
/// end.
fn scratch() -> Result<PathBuf, String> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("flexos-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_stop_handlers();
    let (bin, root) = match locations() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flexos-bench: error: {e}");
            return ExitCode::from(1);
        }
    };
    let scratch = match scratch() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flexos-bench: error: {e}");
            return ExitCode::from(1);
        }
    };
    let env = Env {
        images: cli.images.unwrap_or_else(|| root.join("target/images")),
        out: cli.out.unwrap_or_else(|| root.join("target/bench")),
        bin,
        root,
        scratch: scratch.clone(),
    };
    let result = match &cli.preset {
        Preset::Gates(a) => presets::gates::run(&env, a),
        Preset::Sqlite(a) => presets::sqlite::run(&env, a),
        Preset::Iperf(a) => presets::iperf::run(&env, a),
        Preset::Boot(a) => presets::boot::run(&env, a),
        Preset::Handoff(a) => presets::handoff::run(&env, a),
        Preset::Policy(a) => presets::policy::run(&env, a),
        Preset::Redis(a) => presets::redis::run(&env, a),
        Preset::Nginx(a) => presets::nginx::run(&env, a),
        Preset::Apps(a) => presets::apps::run(&env, a),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flexos-bench: error: {e}");
            match flexos_explore::process::stop_requested() {
                Some(sig) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
                None => ExitCode::from(1),
            }
        }
    }
}
