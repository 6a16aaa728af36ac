//! `flexos-bench apps`: FlexOS Figure 7, Nginx's and Redis's throughput under the same
//! placements, each normalised to its own NONE (everything in one compartment).
//!
//! The `redis` and `nginx` images have the same components (app, net, netdev, vfs,
//! blkdev) and the same default splits, so "N comp" is the same placement for both:
//! 1 = everything; 2 = app,vfs,blkdev | net,netdev; 3 = app | net,netdev | vfs,blkdev;
//! 4 = app | net | netdev | vfs,blkdev; 5 = each component alone. Redis is driven by
//! `redis-benchmark -c 30 -P 16 -t get`, Nginx by `wrk -t 1 -c 30` on the index page
//! (explore's redis and nginx workloads). Rounds interleave every case.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use super::{number_list, run_cases, write_outputs, Env};
use crate::measure::svg::{grouped_bars, Bar};
use crate::measure::{Case, Outcome, Table};
use crate::workload::{Knobs, Nginx, Place, Redis, Workload};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Comma-separated default splits (1..=5); 1 is NONE, the reference, and is
    /// always run.
    #[arg(long, default_value = "1,2,3,4,5")]
    pub compartments: String,
    /// Redis: requests per run (redis-benchmark's -n).
    #[arg(long, default_value_t = 200_000)]
    pub requests: u32,
    /// Nginx: seconds wrk runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Runs of every point (the table shows their median).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
}

const APPS: [&str; 2] = ["redis", "nginx"];

fn key(app: &str, comps: u32) -> String {
    format!("{app} {comps}")
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let mut comps = number_list(&args.compartments, "--compartments", |c| {
        (1..=5).contains(&c)
    })?;
    if !comps.contains(&1) {
        comps.insert(0, 1);
    }
    comps.dedup();
    let redis_target = env.target("redis.elf", None);
    let nginx_target = env.target("nginx.elf", None);
    let redis = Rc::new(RefCell::new(Redis::new(&Knobs {
        requests: Some(args.requests),
        ..Knobs::default()
    })?));
    let nginx = Rc::new(RefCell::new(Nginx::new(&Knobs {
        seconds: Some(args.seconds),
        ..Knobs::default()
    })?));
    redis.borrow_mut().prepare(&redis_target)?;
    if let Err(e) = nginx.borrow_mut().prepare(&nginx_target) {
        redis.borrow_mut().cleanup();
        return Err(e);
    }
    let mut cases = Vec::new();
    for &n in &comps {
        let (r, t) = (Rc::clone(&redis), redis_target.clone());
        cases.push(Case::new(
            key("redis", n),
            format!("redis: {n} comp"),
            move || r.borrow_mut().run_sample(&t, &Place::Compartments(n)),
        ));
        let (g, t) = (Rc::clone(&nginx), nginx_target.clone());
        cases.push(Case::new(
            key("nginx", n),
            format!("nginx: {n} comp"),
            move || g.borrow_mut().run_sample(&t, &Place::Compartments(n)),
        ));
    }
    let out = run_cases("flexos-bench apps", args.reps, 0, cases, &nginx);
    redis.borrow_mut().cleanup();
    let out = out?;
    print!("{}", table(&out, &comps));
    let mut points = serde_json::Map::new();
    for app in APPS {
        let none = out.median(&key(app, 1));
        let mut row = serde_json::Map::new();
        for &n in &comps {
            if let Some(s) = out.get(&key(app, n)) {
                let norm = none.filter(|v| *v > 0.0).map(|v| s.median() / v);
                row.insert(
                    format!("{n} comp"),
                    json!({"rps": s.median(), "normalised": norm, "runs": s.samples}),
                );
            }
        }
        points.insert(app.into(), Value::Object(row));
    }
    let js = json!({
        "bench": "apps",
        "redis": format!("redis-benchmark -c 30 -P 16 -t get -n {}", args.requests),
        "nginx": format!("wrk -t 1 -c 30 -d {} /index.html", args.seconds),
        "reps": args.reps,
        "points": points,
        "engine": out.json(true),
    });
    write_outputs(env, "apps", &js, &svg(&out, &comps))?;
    Ok(())
}

/// A value relative to the app's NONE.
fn normalised(out: &Outcome, app: &str, n: u32) -> Option<f64> {
    let none = out.median(&key(app, 1)).filter(|v| *v > 0.0)?;
    Some(out.median(&key(app, n))? / none)
}

fn table(out: &Outcome, comps: &[u32]) -> String {
    let mut t = Table::new(&[
        "placement",
        "redis k/s",
        "redis / NONE",
        "nginx req/s",
        "nginx / NONE",
    ]);
    for &n in comps {
        let v = |app: &str, div: f64| {
            out.median(&key(app, n))
                .map_or("-".into(), |v| format!("{:.0}", v / div))
        };
        let r = |app: &str| normalised(out, app, n).map_or("-".into(), |r| format!("{r:.2}x"));
        t.row(vec![
            if n == 1 {
                "1 comp (NONE)".into()
            } else {
                format!("{n} comp")
            },
            v("redis", 1000.0),
            r("redis"),
            v("nginx", 1.0),
            r("nginx"),
        ]);
    }
    format!(
        "\nNginx and Redis under the same placements (Figure 7), each / its own NONE\n{}\
         2 comp: app,vfs,blkdev | net,netdev; 3: app | net,netdev | vfs,blkdev; 4: app | net | netdev | vfs,blkdev; 5: each alone.\n",
        t.render()
    )
}

fn svg(out: &Outcome, comps: &[u32]) -> String {
    let groups: Vec<(String, Vec<Bar>)> = comps
        .iter()
        .map(|&n| {
            let bars = [("redis", "#c33"), ("nginx", "#393")]
                .iter()
                .filter_map(|&(app, colour)| Some(Bar::new(app, normalised(out, app, n)?, colour)))
                .collect();
            (format!("{n} comp"), bars)
        })
        .collect();
    grouped_bars(
        "Nginx and Redis, normalised to their own NONE (FlexOS Figure 7 style)",
        "throughput / NONE",
        &groups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_app_and_split() {
        assert_eq!(key("nginx", 3), "nginx 3");
    }
}
