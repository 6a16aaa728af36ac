//! `flexos-bench iperf`: iPerf in the style of FlexOS Figure 9.
//!
//! A stock iperf2 client (`iperf -c IP -t SECONDS`, as FlexOS ran it) streams into a
//! server that loops recv(N), N swept from 16 B to 1 MiB. Per N, in one run:
//!   - veth: the host kernel's `iperf -s -l N` over a veth pair between two namespaces;
//!   - fwd plain: the same server behind two taps joined by bench's `tapfwd` moving
//!     1514-byte frames;
//!   - fwd TSO: the same with a vnet header and CSUM/TSO offloads (frames up to 64 KiB),
//!     the best userspace tap path: the yardstick of the guest's device path;
//!   - N comp: the iperf image under N compartments (`recv=N count=1`), its virtio-net
//!     device on a tap (explore's iperf workload).
//!
//! Then the iperf3 modes (`--iperf3-modes`, default all): the stock iperf3 client
//! sending (`fwd`), receiving (`R`: the guest sends), with four streams each way
//! (`P4`, `RP4`, each stream's rate shown) and both ways (`bidir`), into the guest
//! under each N and, as the yardstick, into the host kernel's `iperf3 -s` behind the
//! TSO tap forwarder.
//!
//! Every namespace is made and removed by flexos-netns; nothing is routed to or from
//! the host's own namespace. While each run streams, the monitor's (or tapfwd's)
//! threads are sampled from /proc: the host cores each used.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use flexos_netns::NetNs;
use serde_json::{json, Value};

use super::{comps_of, net_policies, number_list, ratio, run_cases, shown, Env};
use crate::measure::svg::{lines_log2, Line};
use crate::measure::{self, Case, Outcome, Sample, Table, ThreadSampler};
use crate::process::{self, Running};
use crate::workload::iperf::{client_report, iperf3_report};
use crate::workload::{Iperf, Knobs, Place, Workload};

const SIZES: [u32; 11] = [
    16, 32, 64, 128, 256, 1024, 4096, 16384, 65536, 262144, 1048576,
];
/// FlexOS ASPLOS'22 Figure 9 (Gbit/s); 32 KiB..1 MiB is a range there, its midpoint here.
const FLEXOS_NONE: [(u32, f64); 8] = [
    (16, 1.06),
    (64, 2.85),
    (256, 3.01),
    (1024, 3.00),
    (16384, 3.04),
    (65536, 3.045),
    (262144, 3.045),
    (1048576, 3.045),
];
const FLEXOS_EPT2: [(u32, f64); 8] = [
    (16, 0.36),
    (64, 1.07),
    (256, 2.73),
    (1024, 2.83),
    (16384, 2.88),
    (65536, 2.86),
    (262144, 2.86),
    (1048576, 2.86),
];
const GOAL_1_FWD: f64 = 1.0;
const GOAL_2_1_BIG: f64 = 0.95;
const GOAL_2_1_16: f64 = 0.8;
const GOAL_3_1_BIG: f64 = 0.8;
const CLIENT_IP: &str = "10.0.0.1";
const SERVER_IP: &str = flexos_netns::GUEST_IP;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Seconds the client streams per point.
    #[arg(long, default_value_t = 4)]
    pub seconds: u32,
    /// Comma-separated receive sizes in bytes (default: Figure 9's sweep, 16 .. 1048576).
    #[arg(long)]
    pub sizes: Option<String>,
    /// Comma-separated subset of 1,2,3; empty for the baselines only.
    #[arg(long, default_value = "1,2,3")]
    pub compartments: String,
    /// Guest runs only (no veth, no tapfwd).
    #[arg(long)]
    pub no_baselines: bool,
    /// Runs of every point (the table shows their median).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Run the sweep again beside N busy processes and report slowdowns.
    #[arg(long, default_value_t = 0)]
    pub load: usize,
    /// Passed to the monitor as --tune (a thread-policy candidate).
    #[arg(long)]
    pub tune: Option<String>,
    /// Comma-separated iperf3 modes after the sweep: fwd (client sends), R (-R: the
    /// server sends), P4 (-P 4), RP4 (-R -P 4), bidir (--bidir); empty for none.
    #[arg(long, default_value = "fwd,R,P4,RP4,bidir")]
    pub iperf3_modes: String,
    /// Only the iperf3 modes (no iperf2 sweep).
    #[arg(long)]
    pub iperf3_only: bool,
}

/// The iperf3 client's extra arguments for a mode of `--iperf3-modes`.
fn mode_args(mode: &str) -> Option<&'static [&'static str]> {
    Some(match mode {
        "fwd" => &[],
        "R" => &["-R"],
        "P4" => &["-P", "4"],
        "RP4" => &["-R", "-P", "4"],
        "bidir" => &["--bidir"],
        _ => return None,
    })
}

/// The host kernel's `iperf3 -s` behind two taps joined by `tapfwd --vnet` (the TSO
/// forwarder): iperf3 with `extra` for `seconds`; Gbit/s received and per stream.
fn run_tapfwd3(tapfwd: &std::path::Path, extra: &[&str], seconds: u32) -> Result<Sample, String> {
    let c = NetNs::unique("c").map_err(err)?;
    let s = NetNs::unique("s").map_err(err)?;
    c.add_tap("fxt0", &format!("{CLIENT_IP}/24"), true)
        .map_err(err)?;
    s.add_tap("fxt0", &format!("{SERVER_IP}/24"), true)
        .map_err(err)?;
    let mut cmd = s.command("stdbuf").map_err(err)?;
    cmd.args(["-oL", "iperf3", "-s", "-1"]);
    let mut server = Running::spawn(cmd, "iperf3 -s").map_err(err)?;
    if !server
        .wait_for("Server listening", Duration::from_secs(20))
        .map_err(err)?
    {
        return Err("iperf3 -s exited before it listened".into());
    }
    let mut cmd = Command::new(tapfwd);
    cmd.arg("--vnet");
    cmd.args([format!("{}:fxt0", c.name()), format!("{}:fxt0", s.name())]);
    let mut fwd = Running::spawn(cmd, "tapfwd").map_err(err)?;
    if !fwd
        .wait_for("tapfwd: forwarding", Duration::from_secs(20))
        .map_err(err)?
    {
        return Err("tapfwd exited before it forwarded".into());
    }
    let mut cmd = c.command("iperf3").map_err(err)?;
    cmd.args(["-c", SERVER_IP, "-t", &seconds.to_string(), "-J"]);
    cmd.args(extra);
    let done = process::run(
        cmd,
        "the iperf3 client",
        Duration::from_secs(u64::from(seconds) + 60),
    )
    .map_err(err)?;
    match iperf3_report(&done.stdout) {
        Some((gbps, streams)) if done.status.success() => Ok(Sample {
            value: gbps,
            detail: json!({"streams": streams}),
        }),
        _ => Err(format!(
            "the iperf3 client failed ({})\n{}",
            done.status,
            done.tail(5)
        )),
    }
}

fn key3(mode: &str, col: &str) -> String {
    format!("iperf3 {mode} {col}")
}

pub fn size_label(n: f64) -> String {
    let n = n as u64;
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The host kernel's `iperf -s -l SIZE` in `ns`, once it listens.
fn kernel_server(ns: &NetNs, size: u32) -> Result<Running, String> {
    let mut cmd = ns.command("stdbuf").map_err(err)?;
    cmd.args(["-oL", "iperf", "-s", "-l", &size.to_string()]);
    let mut server = Running::spawn(cmd, "iperf -s").map_err(err)?;
    if !server
        .wait_for("Server listening", Duration::from_secs(20))
        .map_err(err)?
    {
        return Err("iperf -s exited before it listened".into());
    }
    Ok(server)
}

/// The stock client in `ns` for `seconds`: Gbit/s and bytes.
fn client(ns: &NetNs, seconds: u32) -> Result<(f64, u64), String> {
    let mut cmd = ns.command("iperf").map_err(err)?;
    cmd.args(["-c", SERVER_IP, "-t", &seconds.to_string(), "-y", "C"]);
    let done = process::run(
        cmd,
        "the iperf client",
        Duration::from_secs(u64::from(seconds) + 60),
    )
    .map_err(err)?;
    match client_report(&done.stdout) {
        Some(r) if done.status.success() => Ok(r),
        _ => Err(format!(
            "the iperf client failed ({})\n{}",
            done.status,
            done.tail(5)
        )),
    }
}

fn run_veth(size: u32, seconds: u32) -> Result<Sample, String> {
    let (c, s) = super::veth_pair()?;
    let _server = kernel_server(&s, size)?;
    Ok(client(&c, seconds)?.0.into())
}

fn run_tapfwd(
    tapfwd: &std::path::Path,
    size: u32,
    seconds: u32,
    vnet: bool,
) -> Result<Sample, String> {
    let c = NetNs::unique("c").map_err(err)?;
    let s = NetNs::unique("s").map_err(err)?;
    c.add_tap("fxt0", &format!("{CLIENT_IP}/24"), vnet)
        .map_err(err)?;
    s.add_tap("fxt0", &format!("{SERVER_IP}/24"), vnet)
        .map_err(err)?;
    let _server = kernel_server(&s, size)?;
    let mut cmd = Command::new(tapfwd);
    if vnet {
        cmd.arg("--vnet");
    }
    cmd.args([format!("{}:fxt0", c.name()), format!("{}:fxt0", s.name())]);
    let mut fwd = Running::spawn(cmd, "tapfwd").map_err(err)?;
    if !fwd
        .wait_for("tapfwd: forwarding", Duration::from_secs(20))
        .map_err(err)?
    {
        return Err("tapfwd exited before it forwarded".into());
    }
    let sampler = ThreadSampler::start(fwd.id());
    let (gbps, _) = client(&c, seconds)?;
    Ok(Sample {
        value: gbps,
        detail: json!({"cores": sampler.cores()}),
    })
}

fn key(size: u32, col: &str) -> String {
    format!("{size} {col}")
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let sizes = match &args.sizes {
        Some(s) => number_list(s, "--sizes", |n| (1..=1 << 20).contains(&n))?,
        None => SIZES.to_vec(),
    };
    let comps = number_list(&args.compartments, "--compartments", |c| {
        (1..=3).contains(&c)
    })?;
    if sizes.is_empty() {
        return Err("--sizes: 1..1048576 bytes".into());
    }
    if args.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    for tool in ["ip", "iperf", "stdbuf"] {
        crate::workload::require_tool(tool, tool)?;
    }
    let mut columns: Vec<String> = Vec::new();
    if !args.no_baselines {
        columns.extend(["veth", "fwd plain", "fwd TSO"].map(String::from));
    }
    columns.extend(comps.iter().map(|c| format!("{c} comp")));

    let target = env.target("iperf.elf", args.tune.as_deref());
    let guest = Rc::new(RefCell::new(Iperf::new(&Knobs {
        seconds: Some(args.seconds),
        ..Knobs::default()
    })?));
    if !comps.is_empty() {
        guest.borrow_mut().prepare(&target)?;
    }
    let tapfwd = env.bin.join("tapfwd");
    let modes: Vec<String> = args
        .iperf3_modes
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    if let Some(bad) = modes.iter().find(|m| mode_args(m).is_none()) {
        return Err(format!(
            "--iperf3-modes: unknown mode {bad} (want fwd, R, P4, RP4, bidir)"
        ));
    }
    if !modes.is_empty() {
        crate::workload::require_tool("iperf3", "iperf3")?;
    }
    let sizes = if args.iperf3_only { Vec::new() } else { sizes };
    let mut columns3: Vec<String> = Vec::new();
    if !args.no_baselines {
        columns3.push("fwd TSO".into());
    }
    columns3.extend(comps.iter().map(|c| format!("{c} comp")));
    let mut cases = Vec::new();
    for &size in &sizes {
        for col in &columns {
            let label = format!("recv {}: {col}", size_label(f64::from(size)));
            let seconds = args.seconds;
            let case = match col.as_str() {
                "veth" => Case::new(key(size, col), label, move || run_veth(size, seconds)),
                "fwd plain" | "fwd TSO" => {
                    let (t, vnet) = (tapfwd.clone(), col == "fwd TSO");
                    Case::new(key(size, col), label, move || {
                        run_tapfwd(&t, size, seconds, vnet)
                    })
                }
                _ => {
                    let n = comps_of(col);
                    let (g, t) = (Rc::clone(&guest), target.clone());
                    Case::new(key(size, col), label, move || {
                        let mut g = g.borrow_mut();
                        g.set_recv(size);
                        g.run_sample(&t, &Place::Compartments(n))
                    })
                }
            };
            cases.push(case);
        }
    }
    for mode in &modes {
        let extra = mode_args(mode).unwrap_or(&[]);
        for col in &columns3 {
            let label = format!("iperf3 {mode}: {col}");
            let seconds = args.seconds;
            let case = if col == "fwd TSO" {
                let t = tapfwd.clone();
                Case::new(key3(mode, col), label, move || {
                    run_tapfwd3(&t, extra, seconds)
                })
            } else {
                let n = comps_of(col);
                let (g, t) = (Rc::clone(&guest), target.clone());
                let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
                Case::new(key3(mode, col), label, move || {
                    let mut g = g.borrow_mut();
                    g.set_iperf3(Some(extra.clone()));
                    let r = g.run_sample(&t, &Place::Compartments(n));
                    g.set_iperf3(None);
                    r
                })
            };
            cases.push(case);
        }
    }
    let out = run_cases("flexos-bench iperf", args.reps, args.load, cases, &guest)?;
    let (policy_text, policy_json) = net_policies(&target, &comps, "fxt0", args.tune.as_deref())?;
    if !sizes.is_empty() {
        print!("{}", table(&out, &sizes, &columns, args.seconds));
    }
    if !modes.is_empty() {
        print!("{}", table3(&out, &modes, &columns3, args.seconds));
    }
    if let Some(loaded) = &out.loaded {
        print!("{}", load_table(&out, loaded, &sizes, &columns));
    }
    print!("{policy_text}");

    let mut points = serde_json::Map::new();
    for &size in &sizes {
        let mut row = serde_json::Map::new();
        for col in &columns {
            if let Some(s) = out.get(&key(size, col)) {
                row.insert(col.clone(), point(s));
            }
        }
        points.insert(size.to_string(), Value::Object(row));
    }
    let mut modes_json = serde_json::Map::new();
    for mode in &modes {
        let mut row = serde_json::Map::new();
        for col in &columns3 {
            if let Some(s) = out.get(&key3(mode, col)) {
                row.insert(col.clone(), point(s));
            }
        }
        modes_json.insert(mode.clone(), Value::Object(row));
    }
    let js = json!({
        "bench": "iperf",
        "seconds": args.seconds,
        "sizes": sizes,
        "columns": columns,
        "reps": args.reps,
        "client": "iperf2 -c 10.0.0.2 -t S (default 128 KiB writes)",
        "tune": args.tune,
        "policies": Value::Object(policy_json),
        "points": points,
        "iperf3": {
            "client": "iperf3 -c 10.0.0.2 -t S -J [-R] [-P 4] [--bidir]; Gbit/s received",
            "columns": columns3,
            "modes": Value::Object(modes_json),
        },
        "engine": out.json(true),
    });
    measure::write_json(&env.out, "iperf.json", &js)?;
    if sizes.is_empty() {
        println!("\nwrote {}", shown(&env.out.join("iperf.json")));
        return Ok(());
    }
    measure::write_file(&env.out, "iperf.svg", &svg(&out, &sizes, &columns))?;
    println!(
        "\nwrote {} and {}",
        shown(&env.out.join("iperf.json")),
        shown(&env.out.join("iperf.svg"))
    );
    Ok(())
}

/// One point of the JSON: the median and, from the median run, what else it saw.
fn point(s: &measure::Stats) -> Value {
    let m = s.median();
    let i = s
        .samples
        .iter()
        .enumerate()
        .min_by(|a, b| (a.1 - m).abs().total_cmp(&(b.1 - m).abs()))
        .map_or(0, |(i, _)| i);
    let mut v = s.details.get(i).cloned().unwrap_or(Value::Null);
    if !v.is_object() {
        v = json!({});
    }
    v["gbps"] = json!(m);
    v["runs"] = json!(s.samples);
    v
}

fn cores_of(s: &measure::Stats) -> BTreeMap<String, f64> {
    point(s)["cores"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn table(out: &Outcome, sizes: &[u32], columns: &[String], seconds: u32) -> String {
    let g = |size: u32, col: &str| out.median(&key(size, col));
    let mut head = vec!["recv".to_string()];
    head.extend(columns.iter().cloned());
    head.extend(["1c/fwdTSO", "2c/1c", "3c/1c", "FlexOS"].map(String::from));
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head);
    let flexos = |table: &[(u32, f64)], size: u32| {
        table
            .iter()
            .find(|(s, _)| *s == size)
            .map_or("nan".to_string(), |(_, v)| format!("{v:.2}"))
    };
    for &size in sizes {
        let mut row = vec![size_label(f64::from(size))];
        for col in columns {
            row.push(g(size, col).map_or("-".into(), |v| format!("{v:.2}")));
        }
        let one = g(size, "1 comp");
        row.push(ratio(one, g(size, "fwd TSO")));
        row.push(ratio(g(size, "2 comp"), one));
        row.push(ratio(g(size, "3 comp"), one));
        row.push(format!(
            "{}/{}",
            flexos(&FLEXOS_NONE, size),
            flexos(&FLEXOS_EPT2, size)
        ));
        t.row(row);
    }
    let mut s = format!(
        "\niPerf (Figure 9): Gbit/s, iperf2 client, {seconds} s per point\n{}",
        t.render()
    );
    s += "FlexOS column: NONE/EPT2 Gbit/s from the paper (nan: not in the figure).\n";
    s += &format!(
        "Goals: 1 comp >= {GOAL_1_FWD}x fwd TSO at recv >= 1 KiB; 2 comp >= {GOAL_2_1_BIG}x 1 comp at >= 1 KiB and >= {GOAL_2_1_16}x at 16 B; 3 comp >= {GOAL_3_1_BIG}x 1 comp at >= 1 KiB.\n"
    );
    s += "\nHost cores used per thread while the client streamed (median over sizes):\n";
    for col in columns {
        let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for &size in sizes {
            if let Some(st) = out.get(&key(size, col)) {
                for (name, v) in cores_of(st) {
                    per.entry(name).or_default().push(v);
                }
            }
        }
        if !per.is_empty() {
            let cells: Vec<String> = per
                .iter()
                .map(|(k, v)| format!("{k} {:.2}", measure::median(v)))
                .collect();
            s += &format!("  {col}: {}\n", cells.join(", "));
        }
    }
    s
}

/// The iperf3 modes: Gbit/s received per column, the reverse (guest sending) figure
/// against the forward one at the same placement, each column against the TSO
/// forwarder, and each stream's rate for the parallel modes.
fn table3(out: &Outcome, modes: &[String], columns: &[String], seconds: u32) -> String {
    let g = |mode: &str, col: &str| out.median(&key3(mode, col));
    let mut head = vec!["mode".to_string()];
    head.extend(columns.iter().cloned());
    let guests: Vec<&String> = columns.iter().filter(|c| *c != "fwd TSO").collect();
    head.extend(guests.iter().map(|c| format!("{c}/fwdTSO")));
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head);
    for mode in modes {
        let mut row = vec![mode.clone()];
        for col in columns {
            row.push(g(mode, col).map_or("-".into(), |v| format!("{v:.2}")));
        }
        for col in &guests {
            row.push(ratio(g(mode, col), g(mode, "fwd TSO")));
        }
        t.row(row);
    }
    let mut s = format!(
        "\niperf3 modes: Gbit/s received, {seconds} s per point (fwd: the guest receives; R: it sends)\n{}",
        t.render()
    );
    for (rev, fwd) in [("R", "fwd"), ("RP4", "P4")] {
        for col in &guests {
            if let (Some(r), Some(f)) = (g(rev, col), g(fwd, col)) {
                s += &format!(
                    "  {col}: {rev} / {fwd} = {:.2}x (goal for R: >= 0.9x)\n",
                    r / f
                );
            }
        }
    }
    for mode in modes.iter().filter(|m| m.contains("P4")) {
        for col in columns {
            if let Some(st) = out.get(&key3(mode, col)) {
                let per: Vec<String> = point(st)["streams"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_f64)
                            .map(|v| format!("{v:.2}"))
                            .collect()
                    })
                    .unwrap_or_default();
                let max = point(st)["streams"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).fold(0.0, f64::max))
                    .unwrap_or(0.0);
                let min = point(st)["streams"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).fold(f64::MAX, f64::min))
                    .unwrap_or(0.0);
                let spread = if min > 0.0 && min < f64::MAX {
                    format!("{:.2}x", max / min)
                } else {
                    "-".into()
                };
                s += &format!(
                    "  {mode} {col}: per stream {} (max/min {spread}; goal <= 2x)\n",
                    per.join(", ")
                );
            }
        }
    }
    s
}

fn load_table(out: &Outcome, loaded: &Outcome, sizes: &[u32], columns: &[String]) -> String {
    let mut head = vec!["recv"];
    head.extend(columns.iter().map(String::as_str));
    let mut t = Table::new(&head);
    for &size in sizes {
        let mut row = vec![size_label(f64::from(size))];
        for col in columns {
            let k = key(size, col);
            row.push(match (out.median(&k), loaded.median(&k)) {
                (Some(q), Some(l)) if l > 0.0 => format!("{:.2}x", q / l),
                _ => "-".into(),
            });
        }
        t.row(row);
    }
    format!(
        "\nbeside {} busy process(es): slowdown (quiet Gbit/s / loaded Gbit/s; veth is the host kernel's)\n{}",
        out.load,
        t.render()
    )
}

fn svg(out: &Outcome, sizes: &[u32], columns: &[String]) -> String {
    let mut lines: Vec<Line> = columns
        .iter()
        .map(|col| Line {
            name: col.clone(),
            points: sizes
                .iter()
                .filter_map(|&s| Some((f64::from(s), out.median(&key(s, col))?)))
                .collect(),
            dashed: false,
        })
        .collect();
    for (name, table) in [("FlexOS NONE", &FLEXOS_NONE), ("FlexOS EPT2", &FLEXOS_EPT2)] {
        lines.push(Line {
            name: name.into(),
            points: table.iter().map(|&(s, v)| (f64::from(s), v)).collect(),
            dashed: true,
        });
    }
    let ticks: Vec<f64> = sizes.iter().map(|&s| f64::from(s)).collect();
    lines_log2(
        "iPerf throughput vs receive size (FlexOS Figure 9 style)",
        "Gbit/s",
        (4.0, 20.0),
        &ticks,
        size_label,
        &lines,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_label(16.0), "16 B");
        assert_eq!(size_label(4096.0), "4 KiB");
        assert_eq!(size_label(1048576.0), "1 MiB");
    }
}
