//! `flexos-bench policy`: the thread policy's candidates, each measured on the
//! workloads it is meant for. Every candidate is a `--tune` setting of the monitor;
//! "before" is what the monitor did before the thread policy (a device thread always,
//! no pinning, guests spinning 5000 rounds when compartments <= CPUs and 1500
//! otherwise), "policy" is the monitor's own choice. Workloads (median of REPS runs,
//! interleaved): sqlite `bench` (5000 inserts) on a FAT disk on /dev/shm and on ramfs
//! in 2 and 3 compartments (seconds); gatebench `gate-chain` in 3 and 4 compartments
//! (microseconds per call); iperf in 2 and 3 compartments at recv 1 KiB (Gbit/s).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{shown, Env};
use crate::measure::{self, Case, Plan, Sample, Table};
use crate::workload::{Gatebench, Iperf, Knobs, Place, Sqlite, Storage, Workload};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Runs of every (workload, candidate) pair, interleaved.
    #[arg(default_value_t = 3)]
    pub reps: usize,
    /// Comma-separated workload names (default: all; see the table's first column).
    #[arg(long, default_value = "")]
    pub only: String,
}

const WORKLOADS: [(&str, &str); 8] = [
    ("sqlite disk 2c", "s"),
    ("sqlite disk 3c", "s"),
    ("sqlite ramfs 2c", "s"),
    ("sqlite ramfs 3c", "s"),
    ("gate-chain 3c", "us/call"),
    ("gate-chain 4c", "us/call"),
    ("iperf 2c 1KiB", "Gbit/s"),
    ("iperf 3c 1KiB", "Gbit/s"),
];

const CANDIDATES: [&str; 6] = [
    "before",
    "policy",
    "disk in its vCPU only",
    "pinning only",
    "no spinning, unpinned",
    "idle spinners",
];

fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// The `--tune` of `candidate` for a run of `compartments` compartments.
pub fn tune(candidate: &str, compartments: u32) -> Option<String> {
    let spin = if compartments <= cpus() { 5000 } else { 1500 };
    let before = format!("blk=thread,pin=off,spin={spin}");
    match candidate {
        "before" => Some(before),
        "disk in its vCPU only" => Some(before.replace("blk=thread", "blk=vcpu")),
        "pinning only" => Some("blk=thread,pin=on".into()),
        "no spinning, unpinned" => Some("pin=off,spin=0".into()),
        "idle spinners" => Some("idle-spinner=on".into()),
        _ => None,
    }
}

/// The workload of a row, its image and its compartments.
fn workload(name: &str) -> Result<(Box<dyn Workload>, &'static str, u32), String> {
    let c: u32 = if name.contains(" 2c") {
        2
    } else if name.contains(" 3c") {
        3
    } else {
        4
    };
    Ok(match name {
        n if n.starts_with("sqlite disk") => {
            (Box::new(Sqlite::new(&Knobs::default())?), "sqlite.elf", c)
        }
        n if n.starts_with("sqlite ramfs") => (
            Box::new(Sqlite::new(&Knobs::default())?.storage(Storage::Ramfs)),
            "sqlite.elf",
            c,
        ),
        n if n.starts_with("gate-chain") => (
            Box::new(Gatebench::new(&Knobs {
                calls: Some(3000),
                case: Some("gate-chain".into()),
                ..Knobs::default()
            })?),
            "gatebench.elf",
            c,
        ),
        _ => {
            let mut w = Iperf::new(&Knobs {
                recv: Some(1024),
                seconds: Some(3),
                ..Knobs::default()
            })?;
            w.set_recv(1024);
            (Box::new(w), "iperf.elf", c)
        }
    })
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let only: Vec<&str> = args.only.split(',').filter(|s| !s.is_empty()).collect();
    let wanted: Vec<(&str, &str)> = WORKLOADS
        .iter()
        .copied()
        .filter(|(n, _)| only.is_empty() || only.contains(n))
        .collect();
    if wanted.is_empty() {
        let names: Vec<&str> = WORKLOADS.iter().map(|(n, _)| *n).collect();
        return Err(format!("--only: choose from {}", names.join(", ")));
    }
    if args.reps == 0 {
        return Err("REPS must be at least 1".into());
    }
    let started = std::time::Instant::now();
    let mut prepared: Vec<std::rc::Rc<std::cell::RefCell<Box<dyn Workload>>>> = Vec::new();
    let mut cases = Vec::new();
    for (name, unit) in &wanted {
        let (w, image, c) = workload(name)?;
        let w = std::rc::Rc::new(std::cell::RefCell::new(w));
        let base = env.target(image, None);
        w.borrow_mut().prepare(&base)?;
        prepared.push(std::rc::Rc::clone(&w));
        for cand in CANDIDATES {
            let t = tune(cand, c);
            let target = env.target(image, t.as_deref());
            let w = std::rc::Rc::clone(&w);
            let us = *unit == "us/call";
            cases.push(Case::new(
                format!("{name}/{cand}"),
                format!("{name}: {cand}"),
                move || {
                    let s = w
                        .borrow_mut()
                        .run_sample(&target, &Place::Compartments(c))?;
                    Ok(if us {
                        Sample {
                            value: s.value / 1000.0,
                            detail: s.detail,
                        }
                    } else {
                        s
                    })
                },
            ));
        }
    }
    let mut plan = Plan {
        tag: "flexos-bench policy".into(),
        reps: args.reps,
        baseline: None,
        cases,
        load: 0,
    };
    let out = measure::run(&mut plan);
    drop(plan);
    for w in &prepared {
        w.borrow_mut().cleanup();
    }
    let out = out?;

    println!(
        "\nthread-policy candidates, median of {} (x before: >1 is better)",
        args.reps
    );
    let mut head = vec!["workload", "unit"];
    head.extend(CANDIDATES);
    let mut t = Table::new(&head);
    let mut runs = BTreeMap::new();
    let mut med = BTreeMap::new();
    for (name, unit) in &wanted {
        let base = out.median(&format!("{name}/before")).unwrap_or(f64::NAN);
        let mut row = vec![name.to_string(), unit.to_string()];
        let mut r = BTreeMap::new();
        let mut m = BTreeMap::new();
        for cand in CANDIDATES {
            let s = out
                .get(&format!("{name}/{cand}"))
                .cloned()
                .unwrap_or_default();
            let v = s.median();
            let gain = if *unit == "Gbit/s" {
                v / base
            } else {
                base / v
            };
            row.push(format!("{v:.4} ({gain:.2}x)"));
            r.insert(cand, s.samples);
            m.insert(cand, v);
        }
        t.row(row);
        runs.insert(name.to_string(), r);
        med.insert(name.to_string(), m);
    }
    print!("{}", t.render());
    let candidates: BTreeMap<&str, Value> = CANDIDATES
        .iter()
        .map(|c| (*c, json!([tune(c, 2), tune(c, 3)])))
        .collect();
    let js = json!({
        "bench": "policy",
        "date_unix": SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs(),
        "cpus": cpus(),
        "reps": args.reps,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "candidates": candidates,
        "runs": runs,
        "median": med,
    });
    measure::write_json(&env.out, "policy.json", &js)?;
    println!("JSON: {}", shown(&env.out.join("policy.json")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_tune_settings() {
        assert_eq!(tune("policy", 2), None);
        assert_eq!(
            tune("pinning only", 3).as_deref(),
            Some("blk=thread,pin=on")
        );
        let before = tune("before", 2).unwrap();
        assert!(before.starts_with("blk=thread,pin=off,spin="), "{before}");
        assert!(tune("disk in its vCPU only", 2)
            .unwrap()
            .starts_with("blk=vcpu"));
    }
}
