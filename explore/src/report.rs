//! What an exploration shows: the table (FlexOS Figure 6), the JSON with every run, and
//! the Hasse diagram of the placements under refinement with each node's figure and
//! the safest ones within budget starred (FlexOS Figure 8).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::search::{Exploration, Metric, Outcome, Violation};

/// What the report says about the run besides the exploration itself.
pub struct Context<'a> {
    pub workload: &'a str,
    pub describe: &'a str,
    pub image: &'a str,
    pub names: &'a [String],
    pub metric: Metric,
    pub seconds: f64,
}

/// NONE's drift (end against start) beyond which the summary warns.
const DRIFT_WARNING: f64 = 0.10;

/// A ratio to NONE: two decimals, or two significant digits below 0.1 (a gate chain
/// across VMs can be 10^5 times slower than the direct calls of NONE).
pub fn ratio(r: f64) -> String {
    if r >= 0.1 || r == 0.0 {
        format!("{r:.2}x")
    } else {
        let digits = (1 - r.log10().floor() as i32).clamp(2, 12) as usize;
        format!("{r:.digits$}x")
    }
}

/// A figure with a sensible number of digits.
pub fn figure(v: f64) -> String {
    match v.abs() {
        a if a >= 1000.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.1 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

fn status(ex: &Exploration, i: usize, names: &[String]) -> String {
    let e = &ex.entries[i];
    match &e.outcome {
        Outcome::Measured(_) if e.within_budget => "yes".into(),
        Outcome::Measured(_) => "no".into(),
        Outcome::Pruned { by } => format!(
            "pruned (refines {})",
            ex.entries[*by].placement.label(names)
        ),
        Outcome::Failed(_) => "FAILED".into(),
    }
}

/// The table, then the summary lines.
pub fn table(ex: &Exploration, cx: &Context<'_>) -> String {
    let names = cx.names;
    let mut s = String::new();
    let fig_head = format!("median {}", cx.metric.unit);
    let rows: Vec<[String; 6]> = ex
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let fig = match (&e.outcome, e.median) {
                (Outcome::Measured(samples), Some(m)) if samples.len() > 1 => {
                    let lo = samples.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    format!("{} ({}-{})", figure(m), figure(lo), figure(hi))
                }
                (Outcome::Measured(_), Some(m)) => figure(m),
                _ => "-".into(),
            };
            [
                e.placement.label(names),
                e.placement.compartments().to_string(),
                fig,
                e.ratio.map_or("-".into(), ratio),
                if e.safest { "*" } else { "" }.into(),
                status(ex, i, names),
            ]
        })
        .collect();
    let head = [
        "placement".to_string(),
        "comps".into(),
        fig_head,
        "x NONE".into(),
        "safest".into(),
        "within budget".into(),
    ];
    let width = |c: usize| {
        rows.iter()
            .chain(std::iter::once(&head))
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3, w4) = (width(0), width(1), width(2), width(3), width(4));
    for r in std::iter::once(&head).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  {}",
            r[0], r[1], r[2], r[3], r[4], r[5]
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let _ = writeln!(
        s,
        "{}; x NONE: performance relative to every component in one compartment ({}), higher is better",
        if ex.reps > 1 {
            format!("figure: median of {} runs (min-max)", ex.reps)
        } else {
            "figure: one run".into()
        },
        if cx.metric.higher_is_better { "figure / NONE" } else { "NONE / figure" }
    );
    let safest: Vec<String> = ex
        .entries
        .iter()
        .filter(|e| e.safest)
        .map(|e| {
            format!(
                "{} ({})",
                e.placement.label(names),
                ratio(e.ratio.unwrap_or(0.0))
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "safest within {:.0}% of NONE: {}",
        ex.budget * 100.0,
        if safest.is_empty() {
            "none".into()
        } else {
            safest.join(", ")
        }
    );
    let measured = ex
        .entries
        .iter()
        .filter(|e| !matches!(e.outcome, Outcome::Pruned { .. }))
        .count();
    if ex.pruned {
        let _ = writeln!(
            s,
            "pruning: measured {measured} of {} placements ({} runs), saved {} runs",
            ex.entries.len(),
            ex.runs,
            ex.runs_saved
        );
    } else {
        let _ = writeln!(
            s,
            "measured all {} placements ({} runs)",
            ex.entries.len(),
            ex.runs
        );
    }
    if ex.reps < 2 {
        let _ = writeln!(
            s,
            "hypothesis \"a refinement is never faster\": not checked (one run per placement gives no noise to judge by; use --reps 2 or more)"
        );
    } else {
        let _ = writeln!(
            s,
            "hypothesis \"a refinement is never faster\": held on {} of {} measured pairs{}",
            ex.pairs_checked - ex.violations.len(),
            ex.pairs_checked,
            if ex.pruned {
                " (pruned placements are not checked)"
            } else {
                ""
            }
        );
    }
    if let (Some(drift), Some(start)) = (ex.baseline_drift(), ex.entries[ex.baseline].median) {
        let end = crate::search::median(&ex.baseline_after);
        let _ = writeln!(
            s,
            "NONE again at the end: {} {} ({:+.1}% from {} at the start){}",
            figure(end),
            cx.metric.unit,
            drift * 100.0,
            figure(start),
            if drift.abs() > DRIFT_WARNING {
                "; the host drifted: read the ratios with care, or rerun on a quieter host"
            } else {
                ""
            }
        );
    }
    for v in &ex.violations {
        let _ = writeln!(
            s,
            "  faster beyond noise: {} ({}) refines {} ({})",
            ex.entries[v.finer].placement.label(names),
            ex.entries[v.finer].median.map_or("-".into(), figure),
            ex.entries[v.coarser].placement.label(names),
            ex.entries[v.coarser].median.map_or("-".into(), figure),
        );
    }
    for e in &ex.entries {
        if let Outcome::Failed(why) = &e.outcome {
            let _ = writeln!(s, "FAILED {}: {why}", e.placement.label(names));
        }
    }
    s
}

/// The verdict of `--compare-prune`: how much pruning saved against the full run, and
/// whether both named the same safest placements.
pub fn prune_check(full: &Exploration, pruned: &Exploration, names: &[String]) -> String {
    let safest = |ex: &Exploration| -> Vec<String> {
        ex.entries
            .iter()
            .filter(|e| e.safest)
            .map(|e| e.placement.label(names))
            .collect()
    };
    let measured = pruned
        .entries
        .iter()
        .filter(|e| !matches!(e.outcome, Outcome::Pruned { .. }))
        .count();
    let (a, b) = (safest(full), safest(pruned));
    format!(
        "pruning check: with --prune measured {measured} of {} placements ({} runs instead of {}); \
         safest set {} ({}); hypothesis held on {} of {} pairs of the full run",
        pruned.entries.len(),
        pruned.runs,
        full.runs,
        if a == b { "the same" } else { "DIFFERENT" },
        if a == b {
            a.join(", ")
        } else {
            format!("every placement: {}; pruned: {}", a.join(", "), b.join(", "))
        },
        full.pairs_checked - full.violations.len(),
        full.pairs_checked
    )
}

/// Everything, machine-readable.
pub fn json(ex: &Exploration, cx: &Context<'_>) -> Value {
    let names = cx.names;
    let placements: Vec<Value> = ex
        .entries
        .iter()
        .map(|e| {
            let (outcome, samples, detail) = match &e.outcome {
                Outcome::Measured(s) => ("measured", s.clone(), Value::Null),
                Outcome::Pruned { by } => (
                    "pruned",
                    Vec::new(),
                    json!(ex.entries[*by].placement.label(names)),
                ),
                Outcome::Failed(why) => ("failed", Vec::new(), json!(why)),
            };
            json!({
                "placement": e.placement.label(names),
                "compartments": e.placement.blocks().iter()
                    .map(|b| b.iter().map(|&i| names[i].clone()).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
                "outcome": outcome,
                "samples": samples,
                "median": e.median,
                "ratio": e.ratio,
                "within_budget": e.within_budget,
                "safest": e.safest,
                "pruned_by": if outcome == "pruned" { detail.clone() } else { Value::Null },
                "error": if outcome == "failed" { detail } else { Value::Null },
            })
        })
        .collect();
    json!({
        "workload": cx.workload,
        "run": cx.describe,
        "image": cx.image,
        "components": names,
        "unit": cx.metric.unit,
        "higher_is_better": cx.metric.higher_is_better,
        "budget": ex.budget,
        "repetitions": ex.reps,
        "prune": ex.pruned,
        "baseline": ex.entries[ex.baseline].placement.label(names),
        "placements": placements,
        // The poset: each edge joins a placement to one it splits a compartment of.
        "covers": covers(ex)
            .iter()
            .map(|&(fine, coarse)| json!({
                "finer": ex.entries[fine].placement.label(names),
                "coarser": ex.entries[coarse].placement.label(names),
            }))
            .collect::<Vec<_>>(),
        "safest": ex.entries.iter().filter(|e| e.safest)
            .map(|e| e.placement.label(names)).collect::<Vec<_>>(),
        "runs": ex.runs,
        "runs_saved": ex.runs_saved,
        "hypothesis": {
            "pairs_checked": ex.pairs_checked,
            "violations": ex.violations.iter().map(|v| json!({
                "finer": ex.entries[v.finer].placement.label(names),
                "coarser": ex.entries[v.coarser].placement.label(names),
            })).collect::<Vec<_>>(),
        },
        "baseline_after": ex.baseline_after,
        "baseline_drift": ex.baseline_drift(),
        "seconds": cx.seconds,
    })
}

/// The Hasse diagram's edges, as (finer, coarser) entry indices: the finer placement
/// splits one compartment of the coarser one in two.
fn covers(ex: &Exploration) -> Vec<(usize, usize)> {
    let mut edges = Vec::new();
    for (i, fine) in ex.entries.iter().enumerate() {
        for (j, coarse) in ex.entries.iter().enumerate() {
            if fine.placement.covers_down(&coarse.placement) {
                edges.push((i, j));
            }
        }
    }
    edges
}

/// Escapes text for SVG.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The placements of each compartment count (index 0: one compartment), each row
/// ordered by the mean position of the coarser placements it refines (the barycentre
/// heuristic), so edges between rows cross less.
fn level_order(ex: &Exploration, levels: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for k in 1..=levels {
        let mut row: Vec<usize> = (0..ex.entries.len())
            .filter(|&i| ex.entries[i].placement.compartments() == k)
            .collect();
        if let Some(below) = rows.last() {
            let slot = |i: usize| {
                let parents: Vec<f64> = below
                    .iter()
                    .enumerate()
                    .filter(|(_, &j)| {
                        ex.entries[i]
                            .placement
                            .covers_down(&ex.entries[j].placement)
                    })
                    .map(|(x, _)| x as f64)
                    .collect();
                if parents.is_empty() {
                    f64::MAX
                } else {
                    parents.iter().sum::<f64>() / parents.len() as f64
                }
            };
            // Stable: equal barycentres keep enumeration order.
            row.sort_by(|&a, &b| slot(a).total_cmp(&slot(b)));
        }
        rows.push(row);
    }
    rows
}

/// The Hasse diagram: one row per compartment count, NONE at the bottom and the safest
/// (most compartments) at the top; an edge joins a placement to each one that splits
/// one of its compartments. Green: within budget; grey: over; dashed: pruned; red:
/// failed; a thick border and a star: safest within budget.
pub fn hasse_svg(ex: &Exploration, cx: &Context<'_>) -> String {
    const CHAR_W: f64 = 7.0;
    const LINE_H: f64 = 15.0;
    const GAP_X: f64 = 14.0;
    const GAP_Y: f64 = 60.0;
    const MARGIN: f64 = 20.0;
    const TITLE_H: f64 = 50.0;
    let names = cx.names;
    // One text line per compartment, then the figure.
    let lines: Vec<Vec<String>> = ex
        .entries
        .iter()
        .map(|e| {
            let mut l: Vec<String> = e
                .placement
                .blocks()
                .iter()
                .map(|b| {
                    let members: Vec<&str> = b.iter().map(|&i| names[i].as_str()).collect();
                    format!("[{}]", members.join(", "))
                })
                .collect();
            l.push(match (&e.outcome, e.median, e.ratio) {
                (Outcome::Measured(_), Some(m), Some(r)) => {
                    format!(
                        "{} {} ({}){}",
                        figure(m),
                        cx.metric.unit,
                        ratio(r),
                        if e.safest { " \u{2605}" } else { "" }
                    )
                }
                (Outcome::Pruned { .. }, _, _) => "pruned".into(),
                _ => "failed".into(),
            });
            l
        })
        .collect();
    let node_w = lines
        .iter()
        .flatten()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(10) as f64
        * CHAR_W
        + 16.0;
    let max_lines = lines.iter().map(Vec::len).max().unwrap_or(1);
    let node_h = max_lines as f64 * LINE_H + 10.0;
    let levels = ex
        .entries
        .iter()
        .map(|e| e.placement.compartments())
        .max()
        .unwrap_or(1);
    let per_level = level_order(ex, levels);
    let widest = per_level.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let title = format!(
        "{}: placements of {} by safety (up: safer), budget {:.0}% of NONE, \u{2605} safest within it",
        cx.workload,
        std::path::Path::new(cx.image)
            .file_name()
            .map_or(cx.image.into(), |f| f.to_string_lossy()),
        ex.budget * 100.0
    );
    let subtitle = format!(
        "{} ({} run(s) each, median){}",
        cx.describe,
        ex.reps,
        if ex.violations.is_empty() {
            ""
        } else {
            "; red edge: the finer placement was faster beyond noise"
        }
    );
    let text_w = (title.chars().count() as f64 * 8.5).max(subtitle.chars().count() as f64 * 6.5);
    let width = (MARGIN * 2.0 + widest * (node_w + GAP_X))
        .max(MARGIN * 2.0 + text_w)
        .max(640.0);
    let height = TITLE_H + MARGIN + levels as f64 * (node_h + GAP_Y);
    // Centre of each node.
    let mut pos = vec![(0.0, 0.0); ex.entries.len()];
    for (k, row) in per_level.iter().enumerate() {
        let y = height - MARGIN - node_h / 2.0 - k as f64 * (node_h + GAP_Y);
        let row_w = row.len() as f64 * (node_w + GAP_X) - GAP_X;
        for (j, &i) in row.iter().enumerate() {
            let x = (width - row_w) / 2.0 + node_w / 2.0 + j as f64 * (node_w + GAP_X);
            pos[i] = (x, y);
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="monospace" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{MARGIN}" y="22" font-family="sans-serif" font-size="15">{}</text>"#,
        xml(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{MARGIN}" y="40" font-family="sans-serif" font-size="12" fill="#555">{}</text>"##,
        xml(&subtitle)
    );
    for (i, j) in covers(ex) {
        let (x1, y1) = pos[i];
        let (x2, y2) = pos[j];
        // Red: the finer placement was faster beyond noise (the hypothesis failed).
        let failed = ex.violations.contains(&Violation {
            finer: i,
            coarser: j,
        });
        let (colour, width) = if failed {
            ("#c03030", 2.5)
        } else {
            ("#999", 1.0)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{:.1}" x2="{x2:.1}" y2="{:.1}" stroke="{colour}" stroke-width="{width}"/>"#,
            y1 + node_h / 2.0,
            y2 - node_h / 2.0
        );
    }
    for (i, e) in ex.entries.iter().enumerate() {
        let (cx_, cy) = pos[i];
        let (x, y) = (cx_ - node_w / 2.0, cy - node_h / 2.0);
        let (fill, stroke, dash) = match &e.outcome {
            Outcome::Measured(_) if e.within_budget => ("#d8f0d8", "#2a7a2a", ""),
            Outcome::Measured(_) => ("#eeeeee", "#888888", ""),
            Outcome::Pruned { .. } => ("#ffffff", "#aaaaaa", r#" stroke-dasharray="4,3""#),
            Outcome::Failed(_) => ("#f8d0d0", "#b02020", ""),
        };
        let width = if e.safest { 3.5 } else { 1.0 };
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{node_w:.1}" height="{node_h:.1}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>"#
        );
        for (n, line) in lines[i].iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{cx_:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                y + 17.0 + n as f64 * LINE_H,
                xml(line)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{all_placements, Placement};
    use crate::search::{explore, Measure, Settings};

    struct ByCount;
    impl Measure for ByCount {
        fn measure(&mut self, p: &Placement, _rep: usize) -> Result<f64, String> {
            Ok(10.0 / p.compartments() as f64)
        }
    }

    fn sample(prune: bool, budget: f64) -> (Exploration, Vec<String>) {
        let names: Vec<String> = ["app", "net", "netdev"].map(String::from).to_vec();
        let settings = Settings {
            metric: METRIC,
            reps: 2,
            budget,
            prune,
        };
        let ex = explore(all_placements(3), settings, &mut ByCount, |_| {}, &names).unwrap();
        (ex, names)
    }

    const METRIC: Metric = Metric {
        unit: "Gbit/s",
        higher_is_better: true,
    };

    fn context(names: &[String]) -> Context<'_> {
        Context {
            workload: "iperf",
            describe: "test <run>",
            image: "iperf.elf",
            names,
            metric: METRIC,
            seconds: 1.0,
        }
    }

    #[test]
    fn prune_check_compares_the_safest_sets() {
        let (full, names) = sample(false, 0.6);
        let (pruned, _) = sample(true, 0.6);
        assert_eq!(
            prune_check(&full, &pruned, &names),
            "pruning check: with --prune measured 4 of 5 placements (10 runs instead of 12); \
             safest set the same (app,net,netdev); hypothesis held on 7 of 7 pairs of the full run"
        );
        let (looser, _) = sample(true, 0.5);
        assert!(prune_check(&full, &looser, &names).contains(
            "safest set DIFFERENT (every placement: app,net,netdev; pruned: app,net|netdev, app,netdev|net, app|net,netdev)"
        ));
    }

    #[test]
    fn a_refinement_faster_beyond_noise_is_a_red_edge() {
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        struct SplitWins;
        impl Measure for SplitWins {
            fn measure(&mut self, p: &Placement, _rep: usize) -> Result<f64, String> {
                Ok(p.compartments() as f64)
            }
        }
        let settings = Settings {
            metric: METRIC,
            reps: 2,
            budget: 0.5,
            prune: false,
        };
        let ex = explore(all_placements(2), settings, &mut SplitWins, |_| {}, &names).unwrap();
        assert_eq!(ex.violations.len(), 1);
        let svg = hasse_svg(&ex, &context(&names));
        assert_eq!(svg.matches(r##"stroke="#c03030""##).count(), 1);
        assert!(svg.contains("red edge: the finer placement was faster beyond noise"));
        let (quiet, names3) = sample(false, 0.5);
        assert!(!hasse_svg(&quiet, &context(&names3)).contains("#c03030"));
    }

    #[test]
    fn ratios_keep_two_significant_digits() {
        assert_eq!(ratio(1.0), "1.00x");
        assert_eq!(ratio(0.456), "0.46x");
        assert_eq!(ratio(0.039), "0.039x");
        assert_eq!(ratio(0.0080), "0.0080x");
        assert_eq!(ratio(0.0000123), "0.000012x");
        assert_eq!(ratio(0.0), "0.00x");
    }

    #[test]
    fn table_rows_and_summary() {
        let (ex, names) = sample(true, 0.6);
        let t = table(&ex, &context(&names));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[..6],
            [
                "placement       comps     median Gbit/s  x NONE  safest  within budget",
                "app,net,netdev      1  10.0 (10.0-10.0)   1.00x  *       yes",
                "app,net|netdev      2  5.00 (5.00-5.00)   0.50x          no",
                "app,netdev|net      2  5.00 (5.00-5.00)   0.50x          no",
                "app|net,netdev      2  5.00 (5.00-5.00)   0.50x          no",
                "app|net|netdev      3                 -       -          pruned (refines app,net|netdev)",
            ]
        );
        assert!(
            t.contains("safest within 60% of NONE: app,net,netdev (1.00x)\n"),
            "{t}"
        );
        assert!(
            t.contains("NONE again at the end: 10.0 Gbit/s (+0.0% from 10.0 at the start)\n"),
            "{t}"
        );
        assert!(
            t.contains("pruning: measured 4 of 5 placements (10 runs), saved 2 runs"),
            "{t}"
        );
    }

    #[test]
    fn json_names_every_placement_and_the_safest() {
        let (ex, names) = sample(false, 0.5);
        let v = json(&ex, &context(&names));
        assert_eq!(v["placements"].as_array().unwrap().len(), 5);
        assert_eq!(v["baseline"], "app,net,netdev");
        assert_eq!(v["safest"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["placements"][4]["compartments"],
            json!([["app"], ["net"], ["netdev"]])
        );
        assert_eq!(
            v["placements"][4]["samples"],
            json!([10.0 / 3.0, 10.0 / 3.0])
        );
        assert_eq!(v["hypothesis"]["pairs_checked"], 7);
        // NONE under each 2-compartment placement, each of those under all-apart.
        let covers = v["covers"].as_array().unwrap();
        assert_eq!(covers.len(), 6);
        assert!(covers.contains(&json!({"finer": "app|net|netdev", "coarser": "app,net|netdev"})));
        assert!(covers.contains(&json!({"finer": "app,netdev|net", "coarser": "app,net,netdev"})));
    }

    #[test]
    fn hasse_diagram_has_a_node_per_placement_and_an_edge_per_cover() {
        let (ex, names) = sample(true, 0.6);
        let svg = hasse_svg(&ex, &context(&names));
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect").count(), 5);
        // NONE to each of the three 2-compartment placements, each of those to the
        // all-apart one.
        assert_eq!(svg.matches("<line").count(), 6);
        // The star in the title, and on the one safest node.
        assert_eq!(svg.matches(" \u{2605}</text>").count(), 1);
        assert!(svg.contains("test &lt;run&gt;"));
        assert!(svg.contains(">pruned<"));
    }
}
