//! `flexos-bench nginx`: Nginx in the style of FlexOS Figure 6 (bottom).
//!
//! A stock `wrk -t 1 -c 30 -d S` on the 612-byte index page and on a 64 KiB file
//! against, in one run:
//!   - linux: Debian's nginx (one process, the same files, `sendfile off` and the
//!     open-file cache as the guest's built-in configuration) in a namespace behind a
//!     veth pair, the client in another;
//!   - N comp: the unmodified Nginx of the `nginx` image under the image's default
//!     N-way split (2 is app | net,netdev with vfs and blkdev beside the app; 3 is
//!     app | net,netdev | vfs,blkdev), its virtio-net device on a tap and the pages on
//!     a read-only disk (explore's nginx workload).
//!
//! Every namespace is made and removed by flexos-netns; nothing is routed to or from
//! the host's own namespace.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{
    comps_of, goal_line, net_policies, number_list, ratio, rps_row, run_cases, write_outputs, Env,
};
use crate::measure::svg::{grouped_bars, Bar};
use crate::measure::{Case, Outcome, Sample, Table};
use crate::process::Running;
use crate::workload::nginx::{write_pages, wrk, Page, CONNECTIONS, SERVER_IP};
use crate::workload::{Knobs, Nginx, Place, Workload};

/// FlexOS ASPLOS'22 artifact, experiments/fig-06_nginx-redis-perm/paperresults/nginx.csv:
/// the range of its configurations' medians, in requests/s on the index page (wrk -c 30,
/// MPK configurations, another machine, 14 client threads).
const FLEXOS_INDEX: (f64, f64) = (33_000.0, 135_000.0);
const GOAL_1_LINUX: f64 = 1.0;
const GOAL_2_1: f64 = 0.8;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Seconds wrk runs (its -d).
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Comma-separated pages: index (612 bytes), 64k.
    #[arg(long, default_value = "index,64k")]
    pub pages: String,
    #[command(flatten)]
    pub run: super::ServerArgs,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn key(page: Page, col: &str) -> String {
    format!("{} {col}", page.name())
}

fn row_name(page: Page) -> String {
    match page {
        Page::Index => "index (612 B)".into(),
        Page::K64 => "64 KiB file".into(),
    }
}

/// Debian's nginx as one process serving `root`, in its own namespace behind a veth
/// pair; wrk in another. Its configuration, pid and temp files stay in `scratch`.
fn run_linux(scratch: &Path, root: &Path, page: Page, seconds: u32) -> Result<Sample, String> {
    let dir = scratch.join("linux-nginx");
    std::fs::create_dir_all(&dir).map_err(err)?;
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "master_process off; daemon off; worker_processes 1; pid {d}/nginx.pid;
error_log /dev/stdout notice;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    sendfile off;
    open_file_cache max=1000 inactive=20s;
    access_log off;
    client_body_temp_path {d}/body;
    server {{ listen {SERVER_IP}:80; root {}; index index.html; }}
}}
",
            root.display()
        ),
    )
    .map_err(err)?;
    let (c, s) = super::veth_pair()?;
    let mut cmd = s.command("nginx").map_err(err)?;
    cmd.arg("-c").arg(&conf).arg("-p").arg(&dir);
    let mut server = Running::spawn(cmd, "nginx").map_err(err)?;
    // Logged once the listening socket is open.
    if !server
        .wait_for("using the \"epoll\" event method", Duration::from_secs(30))
        .map_err(err)?
    {
        let done = server.finish(Duration::from_secs(5)).map_err(err)?;
        return Err(format!("nginx exited before it listened\n{}", done.tail(5)));
    }
    let value = wrk(&c, SERVER_IP, page, seconds)?;
    drop(server);
    Ok(Sample {
        value,
        detail: json!({"server": "Debian nginx, one process, veth"}),
    })
}

pub fn run(env: &Env, args: &Args) -> Result<(), String> {
    let pages: Vec<Page> = args
        .pages
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Page::parse(s.trim()).map_err(|e| e.replace("--page", "--pages")))
        .collect::<Result<_, _>>()?;
    let comps = number_list(&args.run.compartments, "--compartments", |c| {
        (1..=3).contains(&c)
    })?;
    if pages.is_empty() {
        return Err("--pages needs at least one of index, 64k".into());
    }
    if !(1..=600).contains(&args.seconds) {
        return Err(format!("--seconds {}: want 1..=600", args.seconds));
    }
    crate::workload::require_tool("ip", "iproute2")?;
    crate::workload::require_tool("wrk", "wrk")?;
    if !args.run.no_baseline {
        crate::workload::require_tool("nginx", "nginx")?;
    }
    let mut columns: Vec<String> = Vec::new();
    if !args.run.no_baseline {
        columns.push("linux".into());
    }
    columns.extend(comps.iter().map(|c| format!("{c} comp")));

    let root = env.scratch.join("pages");
    std::fs::create_dir_all(&root).map_err(err)?;
    write_pages(&root)?;
    let target = env.target("nginx.elf", args.run.tune.as_deref());
    let guest = Rc::new(RefCell::new(Nginx::new(&Knobs {
        seconds: Some(args.seconds),
        ..Knobs::default()
    })?));
    if !comps.is_empty() {
        guest.borrow_mut().prepare(&target)?;
    }
    let mut cases = Vec::new();
    for &page in &pages {
        for col in &columns {
            let label = format!("{}: {col}", row_name(page));
            let seconds = args.seconds;
            let case = if col == "linux" {
                let (scratch, root) = (env.scratch.clone(), root.clone());
                Case::new(key(page, col), label, move || {
                    run_linux(&scratch, &root, page, seconds)
                })
            } else {
                let n = comps_of(col);
                let (g, t) = (Rc::clone(&guest), target.clone());
                Case::new(key(page, col), label, move || {
                    let mut g = g.borrow_mut();
                    g.set_page(page);
                    g.run_sample(&t, &Place::Compartments(n))
                })
            };
            cases.push(case);
        }
    }
    let out = run_cases(
        "flexos-bench nginx",
        args.run.reps,
        args.run.load,
        cases,
        &guest,
    )?;
    let (policy_text, policy_json) =
        net_policies(&target, &comps, "fxn0", args.run.tune.as_deref())?;
    print!("{}", table(&out, &pages, &columns, args.seconds));
    if let Some(text) = out.load_table(true) {
        print!("{text}");
    }
    print!("{policy_text}");

    let mut points = serde_json::Map::new();
    for &page in &pages {
        let row = rps_row(&out, &columns, |col| key(page, col));
        points.insert(page.name().into(), row);
    }
    let js = json!({
        "bench": "nginx",
        "client": format!("wrk -t 1 -c {CONNECTIONS} -d {}", args.seconds),
        "columns": columns,
        "reps": args.run.reps,
        "tune": args.run.tune,
        "flexos_index": [FLEXOS_INDEX.0, FLEXOS_INDEX.1],
        "policies": Value::Object(policy_json),
        "points": points,
        "engine": out.json(true),
    });
    write_outputs(env, "nginx", &js, &svg(&out, &pages, &columns))?;
    Ok(())
}

fn table(out: &Outcome, pages: &[Page], columns: &[String], seconds: u32) -> String {
    let mut head = vec!["page".to_string()];
    head.extend(columns.iter().map(|c| format!("{c} req/s")));
    head.extend(["1c/linux", "2c/1c", "3c/1c", "FlexOS req/s"].map(String::from));
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head);
    for &page in pages {
        let g = |col: &str| out.median(&key(page, col));
        let mut row = vec![row_name(page)];
        for col in columns {
            row.push(g(col).map_or("-".into(), |v| format!("{v:.0}")));
        }
        row.push(ratio(g("1 comp"), g("linux")));
        row.push(ratio(g("2 comp"), g("1 comp")));
        row.push(ratio(g("3 comp"), g("1 comp")));
        row.push(if page == Page::Index {
            format!("{:.0}-{:.0}k", FLEXOS_INDEX.0 / 1e3, FLEXOS_INDEX.1 / 1e3)
        } else {
            "-".into()
        });
        t.row(row);
    }
    let mut s = format!(
        "\nNginx (Figure 6, bottom): requests/s, wrk -t 1 -c {CONNECTIONS} -d {seconds}\n{}",
        t.render()
    );
    s += "linux: Debian's nginx, one process, behind a veth pair. 2 comp: app | net,netdev; 3 comp: app | net,netdev | vfs,blkdev.\n";
    s += "FlexOS: the range over its configurations (paperresults nginx.csv, index page; MPK, another machine).\n";
    let index = |col: &str| out.median(&key(Page::Index, col));
    let goals = goal_line(
        "index, 1 comp / linux",
        index("1 comp"),
        index("linux"),
        GOAL_1_LINUX,
    ) + &goal_line(
        "index, 2 comp / 1 comp",
        index("2 comp"),
        index("1 comp"),
        GOAL_2_1,
    );
    if !goals.is_empty() {
        s += "Goals (issue 21):\n";
        s += &goals;
    }
    s
}

fn svg(out: &Outcome, pages: &[Page], columns: &[String]) -> String {
    const COLOURS: [&str; 4] = ["#888", "#27c", "#1b7", "#e62"];
    let groups: Vec<(String, Vec<Bar>)> = pages
        .iter()
        .map(|&page| {
            let bars = columns
                .iter()
                .enumerate()
                .filter_map(|(i, col)| {
                    let v = out.median(&key(page, col))?;
                    Some(Bar::new(col.clone(), v / 1e3, COLOURS[i % COLOURS.len()]))
                })
                .collect();
            (row_name(page), bars)
        })
        .collect();
    grouped_bars(
        "Nginx throughput (FlexOS Figure 6 bottom style), wrk -t 1 -c 30",
        "k requests/s",
        &groups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_keys_name_the_page() {
        assert_eq!(row_name(Page::Index), "index (612 B)");
        assert_eq!(key(Page::K64, "2 comp"), "64k 2 comp");
    }
}
