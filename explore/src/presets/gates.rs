//! `flexos-bench gates`: gate latency in the style of FlexOS Figure 11.
//!
//! In one run: the host cache-line ping-pong (two host threads, one cache line: the
//! baseline), then every gatebench case under NONE (1 compartment), EPT2, EPT3 and
//! EPT4, each case a run of its own (`case=NAME`, so its figure does not depend on the
//! cases before it and each line can be repeated by hand), all in ROUNDS interleaved
//! rounds. The table keeps each case's best median of the rounds (this host's
//! cross-core latency is bimodal while the outer hypervisor moves vCPUs); the JSON
//! keeps every round. EPT3 and EPT4 (more compartments than the 2 host cores) use a
//! tenth of the calls; every case is also bounded by 5 s (gatebench's `seconds=`).

use std::process::Command;
use std::time::Duration;

use flexos_abi::bench::GATEBENCH_CASES;
use serde_json::{json, Value};

use super::{host_run, json_lines, policies, shown, Env};
use crate::measure::svg::{hbars, Bar};
use crate::measure::{self, Case, Plan, Sample, Table};
use crate::workload::{Gatebench, Knobs, Place, Workload};

/// The profiles: name and compartments (default splits).
pub const PROFILES: [(&str, u32); 4] = [("NONE", 1), ("EPT2", 2), ("EPT3", 3), ("EPT4", 4)];
/// Remote hops of gate-chain under each profile's default split.
const CHAIN_HOPS: [(&str, f64); 3] = [("EPT2", 1.0), ("EPT3", 2.0), ("EPT4", 3.0)];
/// What one call of each case is (gatebench's docs).
const CASE_NOTES: [(&str, &str); 8] = [
    ("function-call", "a plain call, no gate"),
    (
        "gate-local",
        "a gate to a component in the caller's compartment (a direct call)",
    ),
    (
        "gate-remote-0",
        "callee.nop(): a gate into the callee's compartment, no arguments",
    ),
    ("gate-remote-6", "callee.sum6(..): six arguments"),
    (
        "gate-remote-buf64",
        "the callee copies 64 B of the caller's shared buffer",
    ),
    ("gate-remote-buf4k", "the same with 4 KiB"),
    (
        "gate-nested",
        "the callee calls back into the caller before it returns",
    ),
    ("gate-chain", "bench -> relay1 -> relay2 -> callee and back"),
];
/// FlexOS ASPLOS'22 Figure 11 (cycles, min over 1e6 calls, Xeon Silver 4114).
const FLEXOS: [(&str, f64); 6] = [
    ("function call", 2.0),
    ("MPK light", 62.0),
    ("MPK with DSS", 108.0),
    ("EPT (VM per compartment)", 462.0),
    ("Linux syscall, no KPTI", 146.0),
    ("Linux syscall, KPTI", 470.0),
];

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Calls per case (EPT3 and EPT4 use a tenth).
    #[arg(default_value_t = 1_000_000)]
    pub calls: u32,
    /// Comma-separated subset of NONE,EPT2,EPT3,EPT4.
    #[arg(long, default_value = "NONE,EPT2,EPT3,EPT4")]
    pub profiles: String,
    /// Repetitions of every measurement, interleaved; the table keeps the best median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Measure everything again beside N busy processes and print each case's
    /// slowdown beside the host ping-pong's.
    #[arg(long, default_value_t = 0)]
    pub load: usize,
    /// Passed to the monitor as --tune (a thread-policy candidate).
    #[arg(long)]
    pub tune: Option<String>,
}

fn key(profile: &str, case: &str) -> String {
    format!("{profile} {case}")
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let profiles: Vec<(&str, u32)> = args
        .profiles
        .split(',')
        .map(|p| {
            PROFILES
                .iter()
                .copied()
                .find(|(n, _)| *n == p.trim())
                .ok_or_else(|| {
                    format!("--profiles: unknown profile '{p}' (NONE, EPT2, EPT3, EPT4)")
                })
        })
        .collect::<Result<_, _>>()?;
    if args.calls == 0 || args.rounds == 0 {
        return Err("CALLS and --rounds must be at least 1".into());
    }
    let tag = "flexos-bench gates";
    let pingpong = env.bin.join("host-pingpong");
    let baseline = Case::new("host-pingpong", "host cache-line ping-pong", || {
        let out = host_run(
            Command::new(&pingpong),
            "host-pingpong",
            Duration::from_secs(300),
        )?;
        let line = json_lines(&out, "gate")
            .into_iter()
            .next()
            .ok_or("host-pingpong printed no result")?;
        Ok(Sample {
            value: line["ns_median"].as_f64().unwrap_or(f64::NAN),
            detail: line,
        })
    });
    let target = env.target("gatebench.elf", args.tune.as_deref());
    let mut cases = Vec::new();
    for &(profile, n) in &profiles {
        let calls = if n > 2 { args.calls / 10 } else { args.calls }.max(1);
        for case in GATEBENCH_CASES.iter().copied() {
            let mut w = Gatebench::new(&Knobs {
                calls: Some(calls),
                case: Some(case.to_string()),
                ..Knobs::default()
            })?;
            let target = target.clone();
            // The exact command, so a reader can run one case by hand.
            let label = format!(
                "{profile}: {} -c {n}{} {} -- case={case} calls={calls} seconds=5",
                shown(&target.vmm),
                args.tune
                    .as_ref()
                    .map(|t| format!(" --tune {t}"))
                    .unwrap_or_default(),
                shown(&target.image)
            );
            cases.push(Case::new(key(profile, case), label, move || {
                w.run_sample(&target, &Place::Compartments(n))
            }));
        }
    }
    let mut plan = Plan {
        tag: tag.into(),
        reps: args.rounds,
        baseline: Some(baseline),
        cases,
        load: args.load,
    };
    let out = measure::run(&mut plan)?;
    drop(plan);
    let policy_cases: Vec<(String, Vec<String>)> = profiles
        .iter()
        .map(|&(p, n)| {
            let mut a = vec!["-c".to_string(), n.to_string()];
            a.extend(Env::tune_opts(args.tune.as_deref()));
            a.push(target.image.display().to_string());
            (p.to_string(), a)
        })
        .collect();
    let (policy_text, policy_json) = policies(&target.vmm, &policy_cases)?;
    let report = report(&out, &profiles, args.rounds);
    print!("{report}");
    print!("{policy_text}");

    let mut js = out.json(false);
    js["bench"] = json!("gates");
    js["calls"] = json!(args.calls);
    js["rounds"] = json!(args.rounds);
    js["tune"] = json!(args.tune);
    js["policies"] = Value::Object(policy_json);
    measure::write_json(&env.out, "gates.json", &js)?;
    measure::write_file(&env.out, "gates.svg", &svg(&out, &profiles))?;
    println!(
        "JSON: {}  plot: {}",
        shown(&env.out.join("gates.json")),
        shown(&env.out.join("gates.svg"))
    );
    Ok(())
}

/// The best run of a case (its detail: gatebench's JSON line).
fn best<'a>(out: &'a measure::Outcome, key: &str) -> Option<&'a Value> {
    out.get(key)?.best_detail(false)
}

fn cycles(v: &Value) -> f64 {
    v["cycles_median"].as_f64().unwrap_or(f64::NAN)
}

/// The table, the goals and the load table.
pub fn report(out: &measure::Outcome, profiles: &[(&str, u32)], rounds: usize) -> String {
    let mut s = String::new();
    let Some(base) = best(out, "host-pingpong") else {
        return s;
    };
    let floor = cycles(base).max(1.0);
    s += &format!(
        "host cache-line ping-pong round trip (two host threads, one cache line): median {} cycles ({} ns), min {}; best of {rounds} round(s)\n",
        base["cycles_median"], base["ns_median"], base["cycles_min"]
    );
    s += &format!(
        "gate latency per call: TSC cycles, the best of {rounds} round(s)' medians, and in brackets \"x pp\", times the host's round trip above\n"
    );
    let mut head = vec!["case".to_string()];
    for (p, n) in profiles {
        head.push(format!("{p}, {n} compartment(s)"));
        head.push("(x pp)".into());
    }
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head);
    for case in GATEBENCH_CASES.iter().copied() {
        let mut row = vec![case.to_string()];
        for (p, _) in profiles {
            match best(out, &key(p, case)) {
                Some(r) => {
                    row.push(format!("{}", cycles(r)));
                    row.push(format!("({:.2}x)", cycles(r) / floor));
                }
                None => row.extend(["-".to_string(), String::new()]),
            }
        }
        t.row(row);
    }
    s += &t.render();
    for (i, (c, note)) in CASE_NOTES.iter().enumerate() {
        s += &format!(
            "{}{c}: {note}\n",
            if i == 0 { "cases: " } else { "       " }
        );
    }
    s += "goals (this project's), with FlexOS's figure beside (its paper's Figure 11: min of 10^6 calls, Xeon Silver 4114):\n";
    if let Some(r) = best(out, &key("EPT2", "gate-remote-0")) {
        let x = cycles(r) / floor;
        s += &format!(
            "  EPT2 gate-remote-0 / host round trip: {x:.2}x (goal <= 1.5x: {}); FlexOS's EPT gate: 462 cycles\n",
            if x <= 1.5 { "met" } else { "not met" }
        );
    }
    for (p, hops) in CHAIN_HOPS {
        if let Some(c) = best(out, &key(p, "gate-chain")) {
            let us = c["ns_median"].as_f64().unwrap_or(f64::NAN) / hops / 1000.0;
            s += &format!(
                "  {p} gate-chain: {us:.2} us per remote hop ({hops} hop(s), ended by {}; goal <= 30 us: {}); FlexOS: not measured\n",
                c["bound"].as_str().unwrap_or("calls"),
                if us <= 30.0 { "met" } else { "not met" }
            );
        }
    }
    if let (Some(l), Some(c)) = (
        best(out, &key("NONE", "gate-local")),
        best(out, &key("NONE", "function-call")),
    ) {
        let x = cycles(l) / cycles(c).max(1.0);
        s += &format!(
            "  NONE gate-local / function-call: {x:.2}x (goal <= 2x: {}); FlexOS: a function call, 2 cycles\n",
            if x <= 2.0 { "met" } else { "not met" }
        );
    }
    if let Some(loaded) = &out.loaded {
        let slow = |k: &str| -> Option<f64> {
            Some(cycles(best(loaded, k)?) / cycles(best(out, k)?).max(1.0))
        };
        s += &format!(
            "\nbeside {} busy process(es): slowdown (best median loaded / quiet)\nhost ping-pong: {}\n",
            out.load,
            slow("host-pingpong").map(|x| format!("{x:.2}x")).unwrap_or("-".into())
        );
        let mut head = vec!["case"];
        head.extend(profiles.iter().map(|(p, _)| *p));
        let mut t = Table::new(&head);
        for case in GATEBENCH_CASES.iter().copied() {
            let mut row = vec![case.to_string()];
            for (p, _) in profiles {
                row.push(
                    slow(&key(p, case))
                        .map(|x| format!("{x:.2}x"))
                        .unwrap_or("-".into()),
                );
            }
            t.row(row);
        }
        s += &t.render();
    }
    s
}

/// FlexOS's bars, then ours: the host ping-pong and each profile's cheap cases.
fn svg(out: &measure::Outcome, profiles: &[(&str, u32)]) -> String {
    let mut bars: Vec<Bar> = FLEXOS
        .iter()
        .map(|(l, c)| Bar::new(format!("FlexOS: {l}"), *c, "#999999"))
        .collect();
    if let Some(b) = best(out, "host-pingpong") {
        bars.push(Bar::new(
            "ours: host ping-pong (baseline)",
            cycles(b),
            "#4c72b0",
        ));
    }
    for (p, _) in profiles {
        for case in ["function-call", "gate-local", "gate-remote-0"] {
            if *p != "NONE" && case == "function-call" {
                continue;
            }
            if let Some(r) = best(out, &key(p, case)) {
                bars.push(Bar::new(format!("ours {p}: {case}"), cycles(r), "#dd8452"));
            }
        }
    }
    hbars(
        "Gate latency, cycles (median; FlexOS: min, from the paper)",
        &bars,
        |v| format!("{v}"),
    )
}
