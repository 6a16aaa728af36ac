//! `flexos-bench boot`: `flexos-vmm --timings hello.elf` (1 compartment) and
//! `flexos-vmm --timings -c 2 gatebench.elf -- calls=1` (2 compartments), RUNS times
//! each, interleaved with spawning /bin/true (the floor any monitor process pays).
//! Phases come from the monitor's own --timings lines (for several compartments: the
//! last one to reach each phase), the wall time is measured here.

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

use super::{shown, Env};
use crate::measure::{self, Case, Plan, Sample, Table};

const PHASES: [&str; 7] = [
    "vm_us",
    "memory_us",
    "slots_us",
    "vm_created_us",
    "machine_us",
    "entry_us",
    "guest_main_us",
];

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Boots of each case (and spawns of /bin/true).
    #[arg(default_value_t = 20)]
    pub runs: usize,
}

/// (label, image, monitor options, guest arguments)
const CASES: [(&str, &str, &[&str], &[&str]); 2] = [
    ("1 compartment (hello)", "hello.elf", &[], &[]),
    (
        "2 compartments (gatebench calls=1)",
        "gatebench.elf",
        &["-c", "2"],
        &["--", "calls=1"],
    ),
];

/// Every phase of one run (the last compartment's), `exit_us`, and the wall time.
pub fn parse_timings(stderr: &str) -> Option<serde_json::Map<String, Value>> {
    let mut phases = serde_json::Map::new();
    let mut seen = false;
    for line in stderr.lines() {
        let Some(at) = line.find("timings: ") else {
            continue;
        };
        let rest = &line[at + "timings: ".len()..];
        if let Some(v) = rest.strip_prefix("exit_us=") {
            phases.insert("exit_us".into(), json!(v.trim().parse::<f64>().ok()?));
            continue;
        }
        if rest.starts_with("compartment=") {
            seen = true;
            for field in rest.split_whitespace().skip(1) {
                let (k, v) = field.split_once('=')?;
                let v: f64 = v.parse().ok()?;
                // The last compartment to get there: the run is ready when all are.
                let old = phases.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                phases.insert(k.to_string(), json!(old.max(v)));
            }
        }
    }
    (seen && phases.contains_key("exit_us")).then_some(phases)
}

fn wall_us(cmd: &mut Command) -> Result<(f64, std::process::Output), String> {
    let t0 = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    Ok((t0.elapsed().as_secs_f64() * 1e6, out))
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    if args.runs == 0 {
        return Err("RUNS must be at least 1".into());
    }
    let baseline = Case::new("spawn-true", "baseline: spawn /bin/true", || {
        Ok(wall_us(&mut Command::new("/bin/true"))?.0.into())
    });
    let mut cases = Vec::new();
    for (label, image, opts, guest) in CASES {
        let (vmm, image) = (env.vmm(), env.image(image));
        let words: Vec<String> = [shown(&vmm), "--timings".into()]
            .into_iter()
            .chain(opts.iter().map(|s| s.to_string()))
            .chain([shown(&image)])
            .chain(guest.iter().map(|s| s.to_string()))
            .collect();
        let text = format!("{label}: {}", words.join(" "));
        cases.push(Case::new(label, text, move || {
            let (wall, out) = wall_us(
                Command::new(&vmm)
                    .arg("--timings")
                    .args(opts)
                    .arg(&image)
                    .args(guest),
            )?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                return Err(format!(
                    "flexos-vmm exited {}: {}",
                    out.status,
                    stderr.trim()
                ));
            }
            let mut phases = parse_timings(&stderr)
                .ok_or_else(|| format!("no timings in output: {}", stderr.trim()))?;
            phases.insert("wall_us".into(), json!(wall));
            Ok(Sample {
                value: wall,
                detail: Value::Object(phases),
            })
        }));
    }
    let mut plan = Plan {
        tag: "flexos-bench boot".into(),
        reps: args.runs,
        baseline: Some(baseline),
        cases,
        load: 0,
    };
    let out = measure::run(&mut plan)?;
    drop(plan);

    let mut result = json!({"bench": "boot", "runs": args.runs, "cases": {}});
    let mut medians = Vec::new();
    for (label, ..) in CASES {
        let st = out.get(label).ok_or("a case did not run")?;
        let mut t = Table::new(&["measure", "median", "min", "max"]);
        let mut med = serde_json::Map::new();
        let mut runs = serde_json::Map::new();
        for phase in PHASES.iter().copied().chain(["exit_us", "wall_us"]) {
            let v: Vec<f64> = st
                .details
                .iter()
                .filter_map(|d| d[phase].as_f64())
                .collect();
            let s = measure::Stats {
                samples: v.clone(),
                details: Vec::new(),
            };
            t.row(vec![
                phase.into(),
                format!("{:.0}", s.median()),
                format!("{:.0}", s.min()),
                format!("{:.0}", s.max()),
            ]);
            med.insert(phase.into(), json!(s.median()));
            runs.insert(phase.into(), json!(v));
        }
        println!(
            "boot of {label}, median of {} runs (microseconds; last compartment)",
            args.runs
        );
        print!("{}", t.render());
        result["cases"][label] = json!({"median_us": med, "runs_us": runs});
        medians.push(med);
    }
    let base = out.get("spawn-true").ok_or("the baseline did not run")?;
    println!(
        "baseline: spawn /bin/true: median {:.0} min {:.0} max {:.0}",
        base.median(),
        base.min(),
        base.max()
    );
    let (one, two) = (&medians[0], &medians[1]);
    let f = |m: &serde_json::Map<String, Value>, k: &str| {
        m.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
    };
    let ratio = f(one, "wall_us") / base.median();
    println!("wall time ratio flexos-vmm hello / spawn of /bin/true: {ratio:.1}x");
    println!(
        "guest main reached {:.2} ms after monitor start (goal: <= 2 ms)",
        f(one, "guest_main_us") / 1000.0
    );
    println!(
        "2 compartments: both guest mains reached {:.2} ms after monitor start (goal: <= 4 ms)",
        f(two, "guest_main_us") / 1000.0
    );
    result["baseline_spawn_true_median_us"] = json!(base.median());
    result["ratio_wall_to_baseline"] = json!(ratio);
    measure::write_json(&env.out, "boot.json", &result)?;
    println!("JSON: {}", shown(&env.out.join("boot.json")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_compartment_sets_each_phase() {
        let stderr = "timings: compartment=0 vm_us=10 guest_main_us=900\n\
                      [x] timings: compartment=1 vm_us=30 guest_main_us=800\n\
                      timings: exit_us=1500\n";
        let p = parse_timings(stderr).unwrap();
        assert_eq!(p["vm_us"], json!(30.0));
        assert_eq!(p["guest_main_us"], json!(900.0));
        assert_eq!(p["exit_us"], json!(1500.0));
        assert!(parse_timings("timings: exit_us=3\n").is_none());
    }
}
