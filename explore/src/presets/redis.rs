//! `flexos-bench redis`: Redis in the style of FlexOS Figure 6 (top).
//!
//! A stock `redis-benchmark -c 30 -P P -t OP -n N` (FlexOS's parameters are `-P 16`
//! with GET and SET; `-P 1` shows the cost per round trip) against, in one run:
//!   - linux: Debian's `redis-server` (one event loop, as Redis runs) in a namespace
//!     behind a veth pair, the client in another;
//!   - N comp: the unmodified Redis of the `redis` image under the image's default
//!     N-way split (2 is app | net,netdev with vfs and blkdev beside the app; 3 is
//!     app | net,netdev | vfs,blkdev), its virtio-net device on a tap (explore's redis
//!     workload).
//!
//! Every namespace is made and removed by flexos-netns; nothing is routed to or from
//! the host's own namespace.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{
    comps_of, goal_line, net_policies, number_list, ratio, rps_row, run_cases, write_outputs, Env,
};
use crate::measure::svg::{grouped_bars, Bar};
use crate::measure::{Case, Outcome, Sample, Table};
use crate::process::Running;
use crate::workload::redis::{benchmark, shutdown, Op, CLIENTS, SERVER_IP};
use crate::workload::{Knobs, Place, Redis, Workload};

/// FlexOS ASPLOS'22 paperresults redis.csv: the range over its 80 configurations, in
/// requests/s (GET and SET, `-c 30 -P 16`).
const FLEXOS_GET: (f64, f64) = (300_000.0, 780_000.0);
const FLEXOS_SET: (f64, f64) = (230_000.0, 650_000.0);
const GOAL_1_LINUX: f64 = 1.0;
const GOAL_2_1: f64 = 0.8;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Requests per run (redis-benchmark's -n).
    #[arg(long, default_value_t = 200_000)]
    pub requests: u32,
    /// Comma-separated pipeline depths (redis-benchmark's -P).
    #[arg(long, default_value = "16,1")]
    pub pipelines: String,
    /// Comma-separated tests: get, set.
    #[arg(long, default_value = "get,set")]
    pub ops: String,
    #[command(flatten)]
    pub run: super::ServerArgs,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn key(op: Op, pipeline: u32, col: &str) -> String {
    format!("{} P{pipeline} {col}", op.name())
}

fn row_name(op: Op, pipeline: u32) -> String {
    format!("{} -P {pipeline}", op.name().to_uppercase())
}

/// Debian's redis-server in its own namespace behind a veth pair; the client in
/// another. Both namespaces go when this returns.
fn run_linux(
    scratch: &std::path::Path,
    op: Op,
    pipeline: u32,
    requests: u32,
) -> Result<Sample, String> {
    let (c, s) = super::veth_pair()?;
    let mut cmd = s.command("redis-server").map_err(err)?;
    cmd.args([
        "--bind",
        SERVER_IP,
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    cmd.args(["--protected-mode", "no", "--daemonize", "no", "--dir"]);
    cmd.arg(scratch);
    let mut server = Running::spawn(cmd, "redis-server").map_err(err)?;
    if !server
        .wait_for("Ready to accept connections", Duration::from_secs(30))
        .map_err(err)?
    {
        return Err("redis-server exited before it was ready".into());
    }
    let value = benchmark(&c, SERVER_IP, op, pipeline, requests)?;
    shutdown(&c, SERVER_IP)?;
    let done = server.finish(Duration::from_secs(30)).map_err(err)?;
    if !done.status.success() {
        return Err(format!(
            "redis-server exited with {}\n{}",
            done.status,
            done.tail(5)
        ));
    }
    Ok(Sample {
        value,
        detail: json!({"server": "Debian redis-server, veth"}),
    })
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let pipelines = number_list(&args.pipelines, "--pipelines", |p| (1..=1024).contains(&p))?;
    let ops: Vec<Op> = args
        .ops
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Op::parse(s.trim()).map_err(|e| e.replace("--op", "--ops")))
        .collect::<Result<_, _>>()?;
    let comps = number_list(&args.run.compartments, "--compartments", |c| {
        (1..=3).contains(&c)
    })?;
    if pipelines.is_empty() || ops.is_empty() {
        return Err("--pipelines and --ops each need at least one value".into());
    }
    if !(1000..=100_000_000).contains(&args.requests) {
        return Err(format!(
            "--requests {}: want 1000..=100000000",
            args.requests
        ));
    }
    for tool in ["ip", "redis-benchmark", "redis-cli", "redis-server"] {
        let package = if tool == "redis-server" {
            tool
        } else {
            "redis-tools"
        };
        crate::workload::require_tool(tool, package)?;
    }
    let mut columns: Vec<String> = Vec::new();
    if !args.run.no_baseline {
        columns.push("linux".into());
    }
    columns.extend(comps.iter().map(|c| format!("{c} comp")));

    let target = env.target("redis.elf", args.run.tune.as_deref());
    let guest = Rc::new(RefCell::new(Redis::new(&Knobs {
        requests: Some(args.requests),
        ..Knobs::default()
    })?));
    if !comps.is_empty() {
        guest.borrow_mut().prepare(&target)?;
    }
    let mut cases = Vec::new();
    for &op in &ops {
        for &p in &pipelines {
            for col in &columns {
                let label = format!("{}: {col}", row_name(op, p));
                let requests = args.requests;
                let case = if col == "linux" {
                    let scratch = env.scratch.clone();
                    Case::new(key(op, p, col), label, move || {
                        run_linux(&scratch, op, p, requests)
                    })
                } else {
                    let n = comps_of(col);
                    let (g, t) = (Rc::clone(&guest), target.clone());
                    Case::new(key(op, p, col), label, move || {
                        let mut g = g.borrow_mut();
                        g.set(op, p);
                        g.run_sample(&t, &Place::Compartments(n))
                    })
                };
                cases.push(case);
            }
        }
    }
    let out = run_cases(
        "flexos-bench redis",
        args.run.reps,
        args.run.load,
        cases,
        &guest,
    )?;
    let (policy_text, policy_json) =
        net_policies(&target, &comps, "fxr0", args.run.tune.as_deref())?;
    print!("{}", table(&out, &ops, &pipelines, &columns, args.requests));
    if let Some(text) = out.load_table(true) {
        print!("{text}");
    }
    print!("{policy_text}");

    let mut points = serde_json::Map::new();
    for &op in &ops {
        for &p in &pipelines {
            let row = rps_row(&out, &columns, |col| key(op, p, col));
            points.insert(row_name(op, p), row);
        }
    }
    let js = json!({
        "bench": "redis",
        "client": format!("redis-benchmark -c {CLIENTS} -P P -t OP -n {}", args.requests),
        "requests": args.requests,
        "columns": columns,
        "reps": args.run.reps,
        "tune": args.run.tune,
        "flexos": {"get": [FLEXOS_GET.0, FLEXOS_GET.1], "set": [FLEXOS_SET.0, FLEXOS_SET.1]},
        "policies": Value::Object(policy_json),
        "points": points,
        "engine": out.json(true),
    });
    write_outputs(env, "redis", &js, &svg(&out, &ops, &pipelines, &columns))?;
    Ok(())
}

fn flexos_range(op: Op) -> (f64, f64) {
    match op {
        Op::Get => FLEXOS_GET,
        Op::Set => FLEXOS_SET,
    }
}

fn table(
    out: &Outcome,
    ops: &[Op],
    pipelines: &[u32],
    columns: &[String],
    requests: u32,
) -> String {
    let mut head = vec!["test".to_string()];
    head.extend(columns.iter().map(|c| format!("{c} k/s")));
    head.extend(["1c/linux", "2c/1c", "3c/1c", "FlexOS k/s"].map(String::from));
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head);
    for &op in ops {
        for &p in pipelines {
            let g = |col: &str| out.median(&key(op, p, col));
            let mut row = vec![row_name(op, p)];
            for col in columns {
                row.push(g(col).map_or("-".into(), |v| format!("{:.0}", v / 1000.0)));
            }
            row.push(ratio(g("1 comp"), g("linux")));
            row.push(ratio(g("2 comp"), g("1 comp")));
            row.push(ratio(g("3 comp"), g("1 comp")));
            let (lo, hi) = flexos_range(op);
            row.push(if p == 16 {
                format!("{:.0}-{:.0}", lo / 1000.0, hi / 1000.0)
            } else {
                "-".into()
            });
            t.row(row);
        }
    }
    let mut s = format!(
        "\nRedis (Figure 6): thousands of requests/s, redis-benchmark -c {CLIENTS} -n {requests}\n{}",
        t.render()
    );
    s += "linux: Debian's redis-server behind a veth pair. 2 comp: app | net,netdev; 3 comp: app | net,netdev | vfs,blkdev.\n";
    s += "FlexOS: the range over its 80 configurations (paperresults redis.csv, -P 16; another machine).\n";
    let get16 = |col: &str| out.median(&key(Op::Get, 16, col));
    let goals = goal_line(
        "GET -P 16, 1 comp / linux",
        get16("1 comp"),
        get16("linux"),
        GOAL_1_LINUX,
    ) + &goal_line(
        "GET -P 16, 2 comp / 1 comp",
        get16("2 comp"),
        get16("1 comp"),
        GOAL_2_1,
    );
    if !goals.is_empty() {
        s += "Goals (issue 20):\n";
        s += &goals;
    }
    s
}

fn svg(out: &Outcome, ops: &[Op], pipelines: &[u32], columns: &[String]) -> String {
    const COLOURS: [&str; 4] = ["#888", "#27c", "#1b7", "#e62"];
    let groups: Vec<(String, Vec<Bar>)> = ops
        .iter()
        .flat_map(|&op| pipelines.iter().map(move |&p| (op, p)))
        .map(|(op, p)| {
            let mut bars: Vec<Bar> = columns
                .iter()
                .enumerate()
                .filter_map(|(i, col)| {
                    let v = out.median(&key(op, p, col))?;
                    Some(Bar::new(col.clone(), v / 1e6, COLOURS[i % COLOURS.len()]))
                })
                .collect();
            if p == 16 {
                let (lo, hi) = flexos_range(op);
                bars.push(Bar::new("FlexOS low", lo / 1e6, "#c9a"));
                bars.push(Bar::new("FlexOS high", hi / 1e6, "#a6c"));
            }
            (row_name(op, p), bars)
        })
        .collect();
    grouped_bars(
        "Redis throughput (FlexOS Figure 6 style), redis-benchmark -c 30",
        "M requests/s",
        &groups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_keys_name_the_test_and_depth() {
        assert_eq!(row_name(Op::Get, 16), "GET -P 16");
        assert_eq!(key(Op::Set, 1, "2 comp"), "set P1 2 comp");
    }
}
