//! The exploration itself, independent of how a placement is measured: which placements
//! to run and in what order, pruning, the ratios to NONE, the budget, the safest
//! placements within it, and the check of FlexOS's hypothesis that a refinement is
//! never faster.
//!
//! Placements are measured by compartment count, fewest first (NONE alone is the first
//! level). Within a level every repetition is one round over all its placements, so a
//! slow drift of the host spreads over the level instead of landing on one placement.
//! With pruning, a placement that refines one already known to be over budget is not
//! run: under the hypothesis it is over budget too. NONE runs once more at the end, so
//! the report can say how far the host drifted meanwhile.

use crate::partition::Placement;

/// What a workload's figure means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// Unit of the figure, for the table (`Gbit/s`, `s`, `ns/call`).
    pub unit: &'static str,
    /// Throughput (true) or time (false).
    pub higher_is_better: bool,
}

impl Metric {
    /// Performance of `figure` relative to `baseline`, as a fraction of it: above 1 is
    /// faster than the baseline, whatever the direction of the figure.
    pub fn ratio(&self, figure: f64, baseline: f64) -> f64 {
        if self.higher_is_better {
            figure / baseline
        } else {
            baseline / figure
        }
    }

    /// Whether `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.higher_is_better {
            a > b
        } else {
            a < b
        }
    }
}

/// Measures one run of a placement. The exploration calls it `reps` times per
/// placement it does not prune.
pub trait Measure {
    /// One run of `placement` (repetition `rep`); the figure, or why the run failed.
    fn measure(&mut self, placement: &Placement, rep: usize) -> Result<f64, String>;
}

/// What happened to one placement.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every repetition's figure, in run order.
    Measured(Vec<f64>),
    /// Not run: it refines placement `by` (an index into the exploration's list), which
    /// is over budget.
    Pruned { by: usize },
    /// A run failed; the rest of the placement's repetitions were not run.
    Failed(String),
}

/// One placement's result.
#[derive(Clone, Debug)]
pub struct Entry {
    pub placement: Placement,
    pub outcome: Outcome,
    /// Median figure over the repetitions (measured placements only).
    pub median: Option<f64>,
    /// Performance relative to NONE (see [`Metric::ratio`]) of the median.
    pub ratio: Option<f64>,
    /// Measured and within budget.
    pub within_budget: bool,
    /// Within budget and no other placement within budget refines it.
    pub safest: bool,
}

/// A pair where the hypothesis failed: `finer` refines `coarser` yet was faster beyond
/// noise (its worst repetition beat the coarser one's best).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub finer: usize,
    pub coarser: usize,
}

/// The whole result.
#[derive(Clone, Debug)]
pub struct Exploration {
    pub entries: Vec<Entry>,
    /// Index of NONE (every component together) in `entries`.
    pub baseline: usize,
    pub budget: f64,
    pub reps: usize,
    pub pruned: bool,
    /// Runs made, and runs pruning saved.
    pub runs: usize,
    pub runs_saved: usize,
    /// Measured pairs (finer, coarser) with the finer one a strict refinement (none
    /// with one repetition: a single run has no noise to judge "faster" against).
    pub pairs_checked: usize,
    pub violations: Vec<Violation>,
    /// NONE measured again after every other placement (`reps` runs; failed runs
    /// left out): how far the host drifted while the exploration ran. Empty when NONE
    /// was the only placement.
    pub baseline_after: Vec<f64>,
}

impl Exploration {
    /// NONE's median at the end relative to its median at the start, minus one
    /// (+0.05: the end's figure is 5% higher), if NONE was measured again.
    pub fn baseline_drift(&self) -> Option<f64> {
        let start = self.entries[self.baseline].median?;
        (!self.baseline_after.is_empty()).then(|| median(&self.baseline_after) / start - 1.0)
    }
}

/// Settings of one exploration.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub metric: Metric,
    pub reps: usize,
    pub budget: f64,
    pub prune: bool,
}

/// Where the exploration is, for progress lines.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    pub placement: &'a Placement,
    pub rep: usize,
    /// Runs made so far, this one included.
    pub done: usize,
    /// Runs still planned (pruning may cancel some).
    pub left: usize,
    pub result: &'a Result<f64, String>,
}

/// Why an exploration could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the NONE baseline ({0}) failed, so nothing can be compared with it: {1}")]
    BaselineFailed(String, String),
    #[error("the NONE baseline is not among the placements")]
    NoBaseline,
    #[error("the NONE baseline measured {0}, which cannot be a denominator")]
    BadBaseline(f64),
}

/// Runs the exploration over `placements` (NONE among them) with `measure`, calling
/// `progress` after every run.
pub fn explore(
    placements: Vec<Placement>,
    settings: Settings,
    measure: &mut dyn Measure,
    mut progress: impl FnMut(Progress<'_>),
    names: &[String],
) -> Result<Exploration, SearchError> {
    let n = placements.first().map_or(0, Placement::components);
    let baseline = placements
        .iter()
        .position(|p| *p == Placement::together(n))
        .ok_or(SearchError::NoBaseline)?;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; placements.len()];
    let mut over: Vec<bool> = vec![false; placements.len()];
    let mut none_figure = None;
    let (mut runs, mut runs_saved) = (0, 0);
    // NONE again after everything else (see `Exploration::baseline_after`).
    let recheck = if placements.len() > 1 {
        settings.reps
    } else {
        0
    };

    let mut levels: Vec<usize> = placements.iter().map(Placement::compartments).collect();
    levels.sort_unstable();
    levels.dedup();
    for level in levels {
        // This level's placements, minus those pruning rules out.
        let mut todo = Vec::new();
        for (i, p) in placements.iter().enumerate() {
            if p.compartments() != level {
                continue;
            }
            let by = (0..placements.len())
                .find(|&q| settings.prune && over[q] && p.strictly_refines(&placements[q]));
            match by {
                Some(by) => {
                    outcomes[i] = Some(Outcome::Pruned { by });
                    over[i] = true;
                    runs_saved += settings.reps;
                }
                None => todo.push(i),
            }
        }
        let mut figures: Vec<Vec<f64>> = vec![Vec::new(); placements.len()];
        for rep in 0..settings.reps {
            for &i in &todo {
                if outcomes[i].is_some() {
                    continue; // failed in an earlier round
                }
                // A figure comes from a guest's or a client's output: one that cannot
                // be a throughput or a time fails the run instead of poisoning ratios.
                let result = measure.measure(&placements[i], rep).and_then(|f| {
                    if f.is_finite() && f > 0.0 {
                        Ok(f)
                    } else {
                        Err(format!(
                            "the run reported {f}, which is not a positive figure"
                        ))
                    }
                });
                runs += 1;
                let left =
                    planned_runs(&placements, &outcomes, level, &todo, rep, i, settings) + recheck;
                progress(Progress {
                    placement: &placements[i],
                    rep,
                    done: runs,
                    left,
                    result: &result,
                });
                match result {
                    Ok(f) => figures[i].push(f),
                    Err(e) if i == baseline => {
                        return Err(SearchError::BaselineFailed(placements[i].label(names), e))
                    }
                    Err(e) => outcomes[i] = Some(Outcome::Failed(e)),
                }
            }
        }
        for &i in &todo {
            if outcomes[i].is_some() {
                continue;
            }
            let samples = std::mem::take(&mut figures[i]);
            if i == baseline {
                let m = median(&samples);
                if !(m.is_finite() && m > 0.0) {
                    return Err(SearchError::BadBaseline(m));
                }
                none_figure = Some(m);
            }
            let none = none_figure.expect("NONE is the first level");
            over[i] = settings.metric.ratio(median(&samples), none) < settings.budget;
            outcomes[i] = Some(Outcome::Measured(samples));
        }
    }

    let mut baseline_after = Vec::new();
    for rep in 0..recheck {
        let result = measure.measure(&placements[baseline], rep);
        runs += 1;
        progress(Progress {
            placement: &placements[baseline],
            rep,
            done: runs,
            left: recheck - rep - 1,
            result: &result,
        });
        if let Ok(f) = result {
            baseline_after.push(f);
        }
    }

    let none = none_figure.expect("the baseline was measured");
    let mut entries: Vec<Entry> = placements
        .into_iter()
        .zip(outcomes)
        .map(|(placement, outcome)| {
            let outcome = outcome.expect("every placement has an outcome");
            let med = match &outcome {
                Outcome::Measured(s) => Some(median(s)),
                _ => None,
            };
            let ratio = med.map(|m| settings.metric.ratio(m, none));
            Entry {
                placement,
                outcome,
                median: med,
                ratio,
                within_budget: ratio.is_some_and(|r| r >= settings.budget),
                safest: false,
            }
        })
        .collect();
    for i in 0..entries.len() {
        entries[i].safest = entries[i].within_budget
            && !entries.iter().enumerate().any(|(j, e)| {
                j != i && e.within_budget && e.placement.strictly_refines(&entries[i].placement)
            });
    }
    // One run per placement says nothing about noise: no verdict then.
    let (pairs_checked, violations) = if settings.reps >= 2 {
        check_hypothesis(&entries, settings.metric)
    } else {
        (0, Vec::new())
    };
    Ok(Exploration {
        entries,
        baseline,
        budget: settings.budget,
        reps: settings.reps,
        pruned: settings.prune,
        runs,
        runs_saved,
        pairs_checked,
        violations,
        baseline_after,
    })
}

/// Runs still planned after the run of placement `current` in round `rep` of `level`:
/// the rest of this round, the later rounds of this level, and every later placement
/// not yet pruned.
fn planned_runs(
    placements: &[Placement],
    outcomes: &[Option<Outcome>],
    level: usize,
    todo: &[usize],
    rep: usize,
    current: usize,
    settings: Settings,
) -> usize {
    let live = |i: &&usize| outcomes[**i].is_none();
    let pos = todo.iter().position(|&i| i == current).unwrap_or(0);
    let this_round = todo[pos + 1..].iter().filter(live).count();
    let later_rounds = todo.iter().filter(live).count() * (settings.reps - rep - 1);
    let later_levels = placements
        .iter()
        .enumerate()
        .filter(|(i, p)| p.compartments() > level && outcomes[*i].is_none())
        .count()
        * settings.reps;
    this_round + later_rounds + later_levels
}

/// Pairs of measured placements where one strictly refines the other, and those where
/// the finer one was faster beyond noise.
fn check_hypothesis(entries: &[Entry], metric: Metric) -> (usize, Vec<Violation>) {
    let (mut pairs, mut violations) = (0, Vec::new());
    for (f, fine) in entries.iter().enumerate() {
        let Outcome::Measured(fs) = &fine.outcome else {
            continue;
        };
        for (c, coarse) in entries.iter().enumerate() {
            let Outcome::Measured(cs) = &coarse.outcome else {
                continue;
            };
            if !fine.placement.strictly_refines(&coarse.placement) {
                continue;
            }
            pairs += 1;
            // The finer placement's worst run against the coarser one's best.
            let worst_fine = fs
                .iter()
                .copied()
                .reduce(|a, b| if metric.better(a, b) { b } else { a });
            let best_coarse = cs
                .iter()
                .copied()
                .reduce(|a, b| if metric.better(a, b) { a } else { b });
            if let (Some(w), Some(b)) = (worst_fine, best_coarse) {
                if metric.better(w, b) {
                    violations.push(Violation {
                        finer: f,
                        coarser: c,
                    });
                }
            }
        }
    }
    (pairs, violations)
}

/// Median of `samples` (mean of the middle two for an even count); NaN if empty.
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::all_placements;
    use flexos_testkit::Rng;

    const THROUGHPUT: Metric = Metric {
        unit: "Gbit/s",
        higher_is_better: true,
    };
    const TIME: Metric = Metric {
        unit: "s",
        higher_is_better: false,
    };

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    /// A synthetic workload's figure for a placement.
    type Figure = Box<dyn FnMut(&Placement) -> Result<f64, String>>;

    /// A synthetic workload: a fixed figure per placement, plus the runs it was asked
    /// for.
    struct Table {
        figure: Figure,
        runs: Vec<Placement>,
    }

    impl Measure for Table {
        fn measure(&mut self, p: &Placement, _rep: usize) -> Result<f64, String> {
            self.runs.push(p.clone());
            (self.figure)(p)
        }
    }

    fn run(
        n: usize,
        settings: Settings,
        figure: impl FnMut(&Placement) -> Result<f64, String> + 'static,
    ) -> (Exploration, Vec<Placement>) {
        let mut table = Table {
            figure: Box::new(figure),
            runs: Vec::new(),
        };
        let ex = explore(all_placements(n), settings, &mut table, |_| {}, &names(n)).unwrap();
        (ex, table.runs)
    }

    fn settings(budget: f64, prune: bool) -> Settings {
        Settings {
            metric: THROUGHPUT,
            reps: 3,
            budget,
            prune,
        }
    }

    fn safest(ex: &Exploration) -> Vec<Placement> {
        ex.entries
            .iter()
            .filter(|e| e.safest)
            .map(|e| e.placement.clone())
            .collect()
    }

    /// A throughput that only falls with every split: 10 / compartments, with each
    /// component pair kept together adding a little (a refinement is never faster).
    fn monotone(p: &Placement) -> Result<f64, String> {
        let n = p.components();
        let together = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| p.compartment_of(i) == p.compartment_of(j))
            .count();
        Ok(10.0 / p.compartments() as f64 + 0.1 * together as f64)
    }

    #[test]
    fn none_alone_is_safest_at_a_budget_only_it_meets() {
        let (ex, runs) = run(3, settings(0.99, false), monotone);
        // Each placement three times, then NONE three times more.
        assert_eq!(runs.len(), 5 * 3 + 3);
        assert_eq!(safest(&ex), [Placement::together(3)]);
        assert_eq!(ex.entries[ex.baseline].ratio, Some(1.0));
        assert!(ex.violations.is_empty());
        // 5 placements of 3: 4 pairs under NONE, 3 pairs over the all-apart one,
        // NONE < all-apart.
        assert_eq!(ex.pairs_checked, 7);
    }

    #[test]
    fn all_apart_is_safest_when_everything_meets_the_budget() {
        let (ex, _) = run(4, settings(0.0, true), monotone);
        assert_eq!(ex.runs_saved, 0);
        let all_apart = all_placements(4).pop().unwrap();
        assert_eq!(safest(&ex), [all_apart]);
    }

    #[test]
    fn safest_are_the_maximal_placements_within_budget() {
        // 2 compartments give 5.x (ratio ~0.5 of NONE's 10.6), 3 give ~3.4.
        let (ex, _) = run(4, settings(0.45, false), monotone);
        let s = safest(&ex);
        assert!(!s.is_empty());
        for p in &s {
            assert_eq!(p.compartments(), 2);
        }
        // Every 2-compartment placement meets it; none of 3 does: all 7 are maximal.
        assert_eq!(s.len(), 7);
        for e in &ex.entries {
            assert_eq!(e.within_budget, e.placement.compartments() <= 2);
        }
    }

    #[test]
    fn pruning_skips_refinements_of_placements_over_budget() {
        let (ex, runs) = run(4, settings(0.6, true), monotone);
        // Only NONE meets 0.6; all 7 two-compartment placements are measured and over,
        // so the 6 + 1 finer ones are pruned.
        assert_eq!(runs.len(), (1 + 7) * 3 + 3);
        assert_eq!(ex.runs_saved, 7 * 3);
        for e in &ex.entries {
            match &e.outcome {
                Outcome::Pruned { by } => {
                    assert!(e.placement.strictly_refines(&ex.entries[*by].placement));
                    assert!(!ex.entries[*by].within_budget);
                    assert!(!e.within_budget && !e.safest);
                }
                Outcome::Measured(s) => assert_eq!(s.len(), 3),
                Outcome::Failed(e) => panic!("{e}"),
            }
        }
        assert_eq!(safest(&ex), [Placement::together(4)]);
    }

    #[test]
    fn pruning_never_drops_a_placement_within_budget_when_the_hypothesis_holds() {
        // Random figures that respect the hypothesis: each placement's figure is the
        // minimum of its coarser neighbours' minus a random cost, so a refinement is
        // never faster. Whatever the budget, pruning must find the same safest set.
        let mut rng = Rng::new(0x5eed_f1e5);
        for n in 1..=5 {
            let all = all_placements(n);
            for trial in 0..40 {
                let mut fig: Vec<f64> = Vec::new();
                for p in &all {
                    let parent = all
                        .iter()
                        .zip(&fig)
                        .filter(|(q, _)| p.covers_down(q))
                        .map(|(_, &f)| f)
                        .fold(100.0, f64::min);
                    fig.push(parent - (rng.below(1000) as f64) / 100.0);
                }
                let budget = (rng.below(100) as f64) / 100.0;
                let lookup = {
                    let (all, fig) = (all.clone(), fig.clone());
                    move |p: &Placement| Ok(fig[all.iter().position(|q| q == p).unwrap()])
                };
                let (full, full_runs) = run(n, settings(budget, false), lookup.clone());
                let (pruned, pruned_runs) = run(n, settings(budget, true), lookup);
                assert!(full.violations.is_empty(), "n={n} trial={trial}");
                assert_eq!(
                    safest(&full),
                    safest(&pruned),
                    "n={n} trial={trial} budget={budget}"
                );
                for (f, p) in full.entries.iter().zip(&pruned.entries) {
                    if f.within_budget {
                        assert!(p.within_budget, "pruning dropped {:?}", f.placement);
                    }
                }
                assert_eq!(pruned_runs.len() + pruned.runs_saved, full_runs.len());
            }
        }
    }

    #[test]
    fn a_faster_refinement_is_reported_as_a_violation() {
        let n = names(3);
        let fast = Placement::parse("c0|c1,c2", &n).unwrap();
        let f = fast.clone();
        let (ex, _) = run(3, settings(0.5, false), move |p| {
            Ok(if *p == f { 20.0 } else { monotone(p).unwrap() })
        });
        let fast_i = ex.entries.iter().position(|e| e.placement == fast).unwrap();
        // It beats NONE (which it refines); the all-apart placement refines it and is
        // slower, which is no violation.
        assert_eq!(
            ex.violations,
            [Violation {
                finer: fast_i,
                coarser: ex.baseline
            }]
        );
    }

    #[test]
    fn noise_within_the_spread_is_no_violation() {
        // The finer placement's median is higher but its worst run is below the
        // coarser one's best: within noise.
        let mut calls = 0;
        let mut t = move |p: &Placement| {
            calls += 1;
            let wobble = [0.0, 1.0, -1.0][calls % 3];
            Ok(if p.compartments() == 1 {
                10.0 + wobble
            } else {
                10.5 + wobble
            })
        };
        let mut table = Table {
            figure: Box::new(move |p| t(p)),
            runs: Vec::new(),
        };
        let ex = explore(
            all_placements(2),
            settings(0.5, false),
            &mut table,
            |_| {},
            &names(2),
        )
        .unwrap();
        assert_eq!(ex.pairs_checked, 1);
        assert!(ex.violations.is_empty());
    }

    #[test]
    fn one_run_per_placement_checks_no_pairs() {
        let s = Settings {
            reps: 1,
            ..settings(0.5, false)
        };
        let (ex, _) = run(3, s, |p| Ok(p.compartments() as f64));
        assert_eq!((ex.pairs_checked, ex.violations.len()), (0, 0));
    }

    #[test]
    fn times_are_ratios_the_other_way_up() {
        let s = Settings {
            metric: TIME,
            reps: 1,
            budget: 0.5,
            prune: false,
        };
        let (ex, _) = run(2, s, |p| Ok(p.compartments() as f64 * 1.5));
        let split = &ex.entries[1];
        assert!((split.ratio.unwrap() - 1.0 / 2.0).abs() < 1e-9);
        assert!(split.within_budget && split.safest);
    }

    #[test]
    fn a_failed_placement_is_reported_and_the_rest_still_runs() {
        let (ex, runs) = run(3, settings(0.0, false), |p| {
            if p.compartments() == 2 && p.compartment_of(0) == p.compartment_of(1) {
                Err("crashed".into())
            } else {
                monotone(p)
            }
        });
        let failed: Vec<_> = ex
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Failed(_)))
            .collect();
        assert_eq!(failed.len(), 1);
        // The failed one ran once; the other four three times each; NONE again.
        assert_eq!(runs.len(), 1 + 4 * 3 + 3);
        assert!(ex.entries.last().unwrap().safest);
    }

    #[test]
    fn an_implausible_figure_fails_the_placement() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let (ex, _) = run(2, settings(0.5, false), move |p| {
                Ok(if p.compartments() == 2 { bad } else { 1.0 })
            });
            match &ex.entries[1].outcome {
                Outcome::Failed(why) => assert!(why.contains("not a positive figure"), "{why}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_failed_baseline_ends_the_exploration() {
        let mut table = Table {
            figure: Box::new(|p| {
                if p.compartments() == 1 {
                    Err("no tap".into())
                } else {
                    Ok(1.0)
                }
            }),
            runs: Vec::new(),
        };
        let err = explore(
            all_placements(2),
            settings(0.5, false),
            &mut table,
            |_| {},
            &names(2),
        )
        .unwrap_err();
        assert!(matches!(err, SearchError::BaselineFailed(_, _)), "{err}");
        assert_eq!(table.runs.len(), 1);
    }

    /// (done, left) after every run.
    fn progress_of(prune: bool) -> Vec<(usize, usize)> {
        let mut table = Table {
            figure: Box::new(monotone),
            runs: Vec::new(),
        };
        let mut seen = Vec::new();
        explore(
            all_placements(3),
            settings(0.9, prune),
            &mut table,
            |p| seen.push((p.done, p.left)),
            &names(3),
        )
        .unwrap();
        seen
    }

    #[test]
    fn progress_counts_down_to_zero() {
        let seen = progress_of(false);
        // NONE, the other four, then NONE again.
        assert_eq!(seen.first(), Some(&(1, 2 + 4 * 3 + 3)));
        assert_eq!(seen.last(), Some(&(18, 0)));
        assert!(seen
            .windows(2)
            .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 + 1 == w[0].1));
    }

    #[test]
    fn progress_with_pruning_plans_at_most_what_runs_unpruned() {
        // Pruning only removes planned runs: done + left never grows, and the last
        // run leaves nothing but what pruning will skip.
        let seen = progress_of(true);
        assert_eq!(seen.first(), Some(&(1, 2 + 4 * 3 + 3)));
        assert!(seen.windows(2).all(|w| w[1].0 + w[1].1 <= w[0].0 + w[0].1));
        // NONE and the three 2-compartment placements run, all-apart is pruned, NONE
        // runs again.
        assert_eq!(seen.len(), 4 * 3 + 3);
    }

    #[test]
    fn none_is_measured_again_at_the_end_for_the_drift() {
        // The host slows down by half while the exploration runs.
        let mut calls = 0;
        let (ex, runs) = run(2, settings(0.5, false), move |p| {
            calls += 1;
            Ok(if calls > 3 { 5.0 } else { 10.0 } / p.compartments() as f64)
        });
        assert_eq!(runs.len(), 3 * 3);
        assert_eq!(
            runs[6..],
            [
                Placement::together(2),
                Placement::together(2),
                Placement::together(2)
            ]
        );
        assert_eq!(ex.baseline_after, [5.0, 5.0, 5.0]);
        assert!((ex.baseline_drift().unwrap() + 0.5).abs() < 1e-9);
        assert_eq!(ex.runs, 9);
        // NONE alone: nothing to compare, no second measurement.
        let mut table = Table {
            figure: Box::new(|_| Ok(1.0)),
            runs: Vec::new(),
        };
        let alone = explore(
            vec![Placement::together(2)],
            settings(0.5, false),
            &mut table,
            |_| {},
            &names(2),
        )
        .unwrap();
        assert_eq!((table.runs.len(), alone.baseline_drift()), (3, None));
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
