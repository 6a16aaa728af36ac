//! Which placements an exploration measures: all of them, or those a filter leaves.
//! NONE (every component together) is always kept, first: it is the baseline.

use crate::partition::{all_placements, Placement, MAX_COMPONENTS};

/// The filters of the command line; empty ones keep everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Exactly these placements (specs such as `app|net,netdev`).
    pub only: Vec<String>,
    /// At most this many compartments.
    pub max_compartments: Option<usize>,
    /// Each list's components share a compartment (`a,b,..`).
    pub together: Vec<String>,
    /// Each list's components are in pairwise different compartments.
    pub apart: Vec<String>,
}

/// Component indices named by `list` (`a,b,..`): at least two, all known.
fn indices(list: &str, names: &[String], option: &str) -> Result<Vec<usize>, String> {
    let idx: Vec<usize> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|n| {
            names.iter().position(|k| k == n).ok_or_else(|| {
                format!(
                    "{option} {list}: unknown component '{n}' (the image has {})",
                    names.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if idx.len() < 2 {
        return Err(format!("{option} {list}: name at least two components"));
    }
    if let Some(twice) = idx
        .iter()
        .enumerate()
        .find(|&(at, i)| idx[..at].contains(i))
    {
        return Err(format!(
            "{option} {list}: component '{}' is named twice",
            names[*twice.1]
        ));
    }
    Ok(idx)
}

impl Filter {
    /// The placements of the components `names` this filter keeps, fewest
    /// compartments first, NONE first of all.
    pub fn select(&self, names: &[String]) -> Result<Vec<Placement>, String> {
        if names.len() > MAX_COMPONENTS {
            return Err(format!(
                "the image has {} components; at most {MAX_COMPONENTS} can be enumerated",
                names.len()
            ));
        }
        if self.max_compartments == Some(0) {
            return Err("--max-compartments 0: a placement has at least one".into());
        }
        let mut chosen = if self.only.is_empty() {
            all_placements(names.len())
        } else {
            let mut v = Vec::new();
            for spec in &self.only {
                let p = Placement::parse(spec, names).map_err(|e| format!("--only {e}"))?;
                if !v.contains(&p) {
                    v.push(p);
                }
            }
            v
        };
        let together: Vec<Vec<usize>> = self
            .together
            .iter()
            .map(|l| indices(l, names, "--together"))
            .collect::<Result<_, _>>()?;
        let apart: Vec<Vec<usize>> = self
            .apart
            .iter()
            .map(|l| indices(l, names, "--apart"))
            .collect::<Result<_, _>>()?;
        chosen.retain(|p| {
            self.max_compartments.is_none_or(|k| p.compartments() <= k)
                && together.iter().all(|g| {
                    g.iter()
                        .all(|&i| p.compartment_of(i) == p.compartment_of(g[0]))
                })
                && apart.iter().all(|g| {
                    g.iter().enumerate().all(|(a, &i)| {
                        g[a + 1..]
                            .iter()
                            .all(|&j| p.compartment_of(i) != p.compartment_of(j))
                    })
                })
        });
        let none = Placement::together(names.len());
        chosen.retain(|p| *p != none);
        chosen.insert(0, none);
        chosen.sort_by_key(Placement::compartments);
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["bench", "callee", "relay1", "relay2"]
            .map(String::from)
            .to_vec()
    }

    fn labels(f: &Filter) -> Vec<String> {
        f.select(&names())
            .unwrap()
            .iter()
            .map(|p| p.label(&names()))
            .collect()
    }

    #[test]
    fn no_filter_keeps_all_fifteen() {
        assert_eq!(labels(&Filter::default()).len(), 15);
    }

    #[test]
    fn only_keeps_the_named_placements_and_adds_none() {
        let f = Filter {
            only: vec![
                "bench|callee|relay1|relay2".into(),
                "relay2 , relay1|bench,callee".into(),
                "bench,callee|relay1,relay2".into(),
            ],
            ..Filter::default()
        };
        assert_eq!(
            labels(&f),
            [
                "bench,callee,relay1,relay2",
                "bench,callee|relay1,relay2",
                "bench|callee|relay1|relay2"
            ]
        );
    }

    #[test]
    fn together_apart_and_max_compartments_combine() {
        let f = Filter {
            max_compartments: Some(3),
            together: vec!["bench,relay1".into()],
            apart: vec!["bench,callee".into()],
            ..Filter::default()
        };
        // bench and relay1 together, callee elsewhere; relay2 with either or alone.
        assert_eq!(
            labels(&f),
            [
                "bench,callee,relay1,relay2",
                "bench,relay1,relay2|callee",
                "bench,relay1|callee,relay2",
                "bench,relay1|callee|relay2"
            ]
        );
    }

    #[test]
    fn bad_filters_are_clear_errors() {
        let err = |f: Filter| f.select(&names()).unwrap_err();
        assert_eq!(
            err(Filter {
                together: vec!["bench,relay3".into()],
                ..Filter::default()
            }),
            "--together bench,relay3: unknown component 'relay3' (the image has bench, callee, relay1, relay2)"
        );
        assert_eq!(
            err(Filter {
                apart: vec!["bench".into()],
                ..Filter::default()
            }),
            "--apart bench: name at least two components"
        );
        assert_eq!(
            err(Filter {
                apart: vec!["bench,bench".into()],
                ..Filter::default()
            }),
            "--apart bench,bench: component 'bench' is named twice"
        );
        assert!(err(Filter {
            only: vec!["bench|callee".into()],
            ..Filter::default()
        })
        .starts_with("--only 'bench|callee': component 'relay1' is not placed"));
        assert_eq!(
            err(Filter {
                max_compartments: Some(0),
                ..Filter::default()
            }),
            "--max-compartments 0: a placement has at least one"
        );
    }
}
