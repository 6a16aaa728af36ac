//! `flexos-bench handoff`: what a hand-off costs on this host, and the thread policy
//! the monitor picks from it. In order:
//!   - host threads (host-handoff): an eventfd ping-pong between two threads blocking
//!     in poll, as the monitor's vCPU threads hand off: on one CPU, on two CPUs, and on
//!     two CPUs with a SCHED_IDLE spinner on each;
//!   - the guest's side (gatebench, 1 compartment): a sleep hypercall that returns at
//!     once (an exit to the monitor and back) and a doorbell (an ioeventfd);
//!   - whole gate round trips between two compartments where every wait sleeps
//!     (`--tune spin=0`): as the scheduler places the vCPUs, pinned, on one CPU
//!     (taskset), with an idle spinner per CPU; and with the policy's spinning;
//!   - the in-kernel wait (halt in ring 0, woken by an irqfd) against the exit to the
//!     monitor in a bare KVM guest (bench/pvm-wake), on one CPU and across CPUs.
//!
//! Guest rows are the median of 3 runs (the engine's rounds).

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{host_run, json_lines, shown, Env};
use crate::measure::{self, progress, Case, Plan, Sample};
use crate::workload::{Gatebench, Knobs, Place, Workload};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// gatebench calls per measurement.
    #[arg(long, default_value_t = 20000)]
    pub calls: u32,
    /// host-handoff round trips per case.
    #[arg(long, default_value_t = 20000)]
    pub round_trips: u32,
    /// Runs of each guest row (median).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
}

const TAG: &str = "flexos-bench handoff";

/// A gatebench row: key (case/variant), label, compartments, --tune, wrapper program.
type GateRow<'a> = (&'a str, &'a str, u32, Option<&'a str>, &'a [&'a str]);

fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The median in microseconds (of `reps` runs) of gatebench's median for `case`.
fn gate_rows(env: &Env, args: &Args, rows: &[GateRow<'_>]) -> Result<Vec<Value>, String> {
    let mut cases = Vec::new();
    for &(key, label, compartments, tune, prefix) in rows {
        let case_name = key.split('/').next().unwrap_or(key);
        let mut w = Gatebench::new(&Knobs {
            calls: Some(args.calls),
            case: Some(case_name.to_string()),
            ..Knobs::default()
        })?;
        let mut target = env.target("gatebench.elf", tune);
        // `taskset -c 0 flexos-vmm ...`: the monitor and every thread it makes on CPU 0.
        target.wrapper = prefix.iter().map(|s| s.to_string()).collect();
        let place = Place::Compartments(compartments);
        cases.push(Case::new(key, label, move || {
            let s = w.run_sample(&target, &place)?;
            Ok(Sample {
                value: s.value / 1000.0,
                detail: s.detail,
            })
        }));
    }
    let mut plan = Plan {
        tag: TAG.into(),
        reps: args.reps,
        baseline: None,
        cases,
        load: 0,
    };
    let out = measure::run(&mut plan)?;
    drop(plan);
    Ok(rows
        .iter()
        .map(|&(key, label, _, tune, _)| {
            let s = out.get(key).cloned().unwrap_or_default();
            json!({"what": label, "us": s.median(), "runs": s.samples, "tune": tune})
        })
        .collect())
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut rows: Vec<Value> = Vec::new();

    progress(
        TAG,
        "host threads: eventfd ping-pong (same CPU, two CPUs, idle spinners)",
    );
    let mut cmd = Command::new(env.bin.join("host-handoff"));
    cmd.arg(args.round_trips.to_string());
    let out = host_run(cmd, "host-handoff", Duration::from_secs(600))?;
    for r in json_lines(&out, "handoff") {
        rows.push(json!({
            "what": format!("host threads: {}", r["case"].as_str().unwrap_or("?")),
            "us": r["us_median"], "spread": [r["us_p10"], r["us_p90"]], "kind": "host",
        }));
    }

    progress(TAG, "guest: sleep hypercall and doorbell (1 compartment)");
    let guest: [GateRow<'_>; 2] = [
        (
            "hypercall-sleep0",
            "guest: exit to the monitor and back (sleep, no wait)",
            1,
            None,
            &[],
        ),
        (
            "hypercall-doorbell",
            "guest: doorbell (ioeventfd, no exit to the monitor)",
            1,
            None,
            &[],
        ),
    ];
    for mut r in gate_rows(env, args, &guest)? {
        r["kind"] = json!("guest");
        rows.push(r);
    }

    progress(
        TAG,
        "hand-offs between two compartments (every wait sleeps: --tune spin=0)",
    );
    let handoffs: [GateRow<'_>; 5] = [
        (
            "gate-remote-0/sched",
            "gate round trip, 2 compartments: vCPUs where the scheduler puts them",
            2,
            Some("spin=0"),
            &[],
        ),
        (
            "gate-remote-0/pinned",
            "gate round trip, 2 compartments: vCPUs pinned to two CPUs",
            2,
            Some("spin=0,pin=on"),
            &[],
        ),
        (
            "gate-remote-0/onecpu",
            "gate round trip, 2 compartments: both vCPUs on one CPU (taskset -c 0)",
            2,
            Some("spin=0"),
            &["taskset", "-c", "0"],
        ),
        (
            "gate-remote-0/idle",
            "gate round trip, 2 compartments: an idle spinner per CPU",
            2,
            Some("spin=0,idle-spinner=on"),
            &[],
        ),
        (
            "gate-remote-0/policy",
            "gate round trip, 2 compartments: the policy's choice (spinning)",
            2,
            None,
            &[],
        ),
    ];
    for mut r in gate_rows(env, args, &handoffs)? {
        r["kind"] = json!("handoff");
        rows.push(r);
    }

    progress(
        TAG,
        "bare KVM guest: exit to the monitor against halt + irqfd (bench/pvm-wake)",
    );
    let pvm = env.root.join("bench/pvm-wake");
    let mut make = Command::new("make");
    make.args(["-s", "-C"]).arg(&pvm);
    host_run(make, "building bench/pvm-wake", Duration::from_secs(600))?;
    for (mode, label) in [
        (
            "0",
            "bare guest: exit to the monitor, vCPU thread blocks on an eventfd",
        ),
        (
            "6",
            "bare guest: halt in ring 0, woken by an irqfd (in-kernel)",
        ),
    ] {
        for where_ in ["same", "cross"] {
            let mut cmd = Command::new(pvm.join("pvmwake"));
            cmd.args([
                "-m", mode, "-n", "200", "-w", "20", "-a", where_, "-g", "1000",
            ])
            .current_dir(&pvm);
            let out = host_run(cmd, &format!("pvmwake -m {mode}"), Duration::from_secs(600))?;
            let (med, p10, p90) = pvmwake_median(&out.join("\n"))
                .ok_or_else(|| format!("pvmwake printed no median:\n{}", out.join("\n")))?;
            let cpus = if where_ == "same" {
                "one CPU"
            } else {
                "two CPUs"
            };
            rows.push(json!({"what": format!("{label}, {cpus}"), "us": med, "spread": [p10, p90], "kind": "bare"}));
        }
    }

    progress(TAG, "the policy for the usual runs");
    let img = |n: &str| env.image(n).display().to_string();
    let policy_runs: Vec<(&str, Vec<String>)> = vec![
        (
            "sqlite, 1 compartment, disk",
            vec![
                "-c".into(),
                "1".into(),
                "--disk".into(),
                "d.img".into(),
                img("sqlite.elf"),
            ],
        ),
        (
            "sqlite, 2 compartments, disk",
            vec![
                "-c".into(),
                "2".into(),
                "--disk".into(),
                "d.img".into(),
                img("sqlite.elf"),
            ],
        ),
        (
            "sqlite, 3 compartments, disk",
            vec![
                "-c".into(),
                "3".into(),
                "--disk".into(),
                "d.img".into(),
                img("sqlite.elf"),
            ],
        ),
        (
            "sqlite, 2 compartments, ramfs",
            vec!["-c".into(), "2".into(), img("sqlite.elf")],
        ),
        (
            "iperf, 1 compartment",
            vec![
                "-c".into(),
                "1".into(),
                "--net".into(),
                "tap=t0".into(),
                img("iperf.elf"),
            ],
        ),
        (
            "iperf, 2 compartments",
            vec![
                "-c".into(),
                "2".into(),
                "--net".into(),
                "tap=t0".into(),
                img("iperf.elf"),
            ],
        ),
        (
            "iperf, 3 compartments",
            vec![
                "-c".into(),
                "3".into(),
                "--net".into(),
                "tap=t0".into(),
                img("iperf.elf"),
            ],
        ),
        (
            "gatebench, 4 compartments",
            vec!["-c".into(), "4".into(), img("gatebench.elf")],
        ),
    ];
    let mut policies = Vec::new();
    for (label, argv) in &policy_runs {
        let (text, js) = measure::policy(&env.vmm(), argv)?;
        policies.push(json!({"run": label, "policy": text, "json": js}));
    }

    let cpu = host_cpu();
    println!(
        "\nHand-off costs on this host ({cpu}, {} CPUs), microseconds, median (host threads: p10-p90; guest rows: median of {} runs)\n",
        cpus(),
        args.reps
    );
    println!("{:<72} {:>9}", "what", "us");
    for r in &rows {
        let us = r["us"].as_f64().map_or("-".into(), |v| format!("{v:.1}"));
        let extra = match r["spread"].as_array() {
            Some(s) => format!(
                "  ({:.1}-{:.1})",
                s[0].as_f64().unwrap_or(f64::NAN),
                s[1].as_f64().unwrap_or(f64::NAN)
            ),
            None => String::new(),
        };
        println!("{:<72} {us:>9}{extra}", r["what"].as_str().unwrap_or("?"));
    }
    println!("\nThe policy flexos-vmm picks (flexos-vmm --print-policy):");
    for p in &policies {
        println!(
            "  {}: {}",
            p["run"].as_str().unwrap_or("?"),
            p["policy"].as_str().unwrap_or("?")
        );
    }
    let result = json!({
        "bench": "handoff",
        "date_unix": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "host_cpu": cpu,
        "cpus": cpus(),
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "rows": rows,
        "policies": policies,
    });
    measure::write_json(&env.out, "handoff.json", &result)?;
    println!("\nJSON: {}", shown(&env.out.join("handoff.json")));
    Ok(())
}

/// `median M us  p10 A  p90 B` from pvmwake's output.
fn pvmwake_median(out: &str) -> Option<(f64, f64, f64)> {
    let at = out.find("median ")?;
    let words: Vec<&str> = out[at..].split_whitespace().collect();
    // median M us p10 A p90 B
    match words.as_slice() {
        ["median", m, "us", "p10", a, "p90", b, ..] => {
            Some((m.parse().ok()?, a.parse().ok()?, b.parse().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pvmwakes_summary() {
        let out = "mode 0 same\nwake: median 12.5 us  p10 10.1  p90 20.0\n";
        assert_eq!(pvmwake_median(out), Some((12.5, 10.1, 20.0)));
        assert_eq!(pvmwake_median("nothing"), None);
    }
}
