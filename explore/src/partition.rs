//! Placements as set partitions of an image's components.
//!
//! A placement puts every component in exactly one compartment, so the placements of n
//! components are the set partitions of {0..n}: Bell(n) of them (5 for 3 components, 15
//! for 4, 52 for 5). One is kept as a restricted growth string: `block[i]` is the
//! compartment of component i, compartments numbered in order of their first component
//! (`block[0] == 0`, and each entry is at most one more than the largest before it), so
//! every partition has exactly one representation and equality is plain `==`.

use std::fmt::Write as _;

use thiserror::Error;

/// Most components an exploration enumerates: Bell(8) = 4140 placements is already
/// hours of runs; beyond that, name a subset with a filter.
pub const MAX_COMPONENTS: usize = 8;

/// One placement: component index -> compartment number (restricted growth string).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    block: Vec<u8>,
}

/// Why a placement spec does not name a placement.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("'{spec}': unknown component '{name}' (the image has {known})")]
    Unknown {
        spec: String,
        name: String,
        known: String,
    },
    #[error("'{spec}': component '{name}' is placed twice")]
    Twice { spec: String, name: String },
    #[error("'{spec}': component '{name}' is not placed")]
    Missing { spec: String, name: String },
    #[error("'{spec}': an empty compartment (write compartments as a,b|c)")]
    Empty { spec: String },
}

impl Placement {
    /// The placement with compartment `assign[i]` for component i, numbered in any way
    /// (renumbered into canonical form).
    pub fn from_assignment(assign: &[usize]) -> Placement {
        let mut seen: Vec<usize> = Vec::new();
        let block = assign
            .iter()
            .map(|&a| {
                let id = seen.iter().position(|&s| s == a).unwrap_or_else(|| {
                    seen.push(a);
                    seen.len() - 1
                });
                u8::try_from(id).expect("at most MAX_COMPONENTS compartments")
            })
            .collect();
        Placement { block }
    }

    /// Every component in one compartment: FlexOS's NONE configuration, the baseline.
    pub fn together(components: usize) -> Placement {
        Placement {
            block: vec![0; components],
        }
    }

    /// Number of components placed.
    pub fn components(&self) -> usize {
        self.block.len()
    }

    /// Number of compartments.
    pub fn compartments(&self) -> usize {
        self.block.iter().max().map_or(0, |&m| usize::from(m) + 1)
    }

    /// The compartment of component `i`.
    pub fn compartment_of(&self, i: usize) -> usize {
        usize::from(self.block[i])
    }

    /// The compartments, each a list of component indices in ascending order.
    pub fn blocks(&self) -> Vec<Vec<usize>> {
        let mut blocks = vec![Vec::new(); self.compartments()];
        for (i, &b) in self.block.iter().enumerate() {
            blocks[usize::from(b)].push(i);
        }
        blocks
    }

    /// Whether `self` refines `coarser`: every compartment of `self` lies inside one
    /// compartment of `coarser` (components together in `self` are together there).
    /// Every placement refines itself.
    pub fn refines(&self, coarser: &Placement) -> bool {
        debug_assert_eq!(self.components(), coarser.components());
        let n = self.components();
        (0..n).all(|i| {
            (i + 1..n)
                .all(|j| self.block[i] != self.block[j] || coarser.block[i] == coarser.block[j])
        })
    }

    /// Whether `self` refines `coarser` and differs from it (strictly safer).
    pub fn strictly_refines(&self, coarser: &Placement) -> bool {
        self != coarser && self.refines(coarser)
    }

    /// Whether `self` is an immediate refinement of `coarser`: one compartment of
    /// `coarser` split in two (an edge of the Hasse diagram).
    pub fn covers_down(&self, coarser: &Placement) -> bool {
        self.compartments() == coarser.compartments() + 1 && self.refines(coarser)
    }

    /// The placement written as `a,b|c` with component names.
    pub fn label(&self, names: &[String]) -> String {
        self.blocks()
            .iter()
            .map(|b| {
                b.iter()
                    .map(|&i| names[i].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    /// Parses `a,b|c` (whitespace ignored) against the image's component names.
    pub fn parse(spec: &str, names: &[String]) -> Result<Placement, SpecError> {
        let mut assign = vec![usize::MAX; names.len()];
        for (b, part) in spec.split('|').enumerate() {
            let members: Vec<&str> = part
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if members.is_empty() {
                return Err(SpecError::Empty { spec: spec.into() });
            }
            for name in members {
                let i = names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| SpecError::Unknown {
                        spec: spec.into(),
                        name: name.into(),
                        known: names.join(", "),
                    })?;
                if assign[i] != usize::MAX {
                    return Err(SpecError::Twice {
                        spec: spec.into(),
                        name: name.into(),
                    });
                }
                assign[i] = b;
            }
        }
        if let Some(i) = assign.iter().position(|&a| a == usize::MAX) {
            return Err(SpecError::Missing {
                spec: spec.into(),
                name: names[i].clone(),
            });
        }
        Ok(Placement::from_assignment(&assign))
    }

    /// The monitor's placement file (`--config`) for this placement. Each compartment
    /// is named after its first component, which is unique.
    pub fn to_config(&self, names: &[String]) -> String {
        let mut s = String::new();
        for block in self.blocks() {
            let members: Vec<String> = block.iter().map(|&i| format!("\"{}\"", names[i])).collect();
            let _ = writeln!(
                s,
                "[[compartment]]\nname = \"{}\"\ncomponents = [{}]\n",
                names[block[0]],
                members.join(", ")
            );
        }
        s
    }
}

/// Every placement of `n` components, fewest compartments first (NONE first), then in
/// restricted-growth-string order.
pub fn all_placements(n: usize) -> Vec<Placement> {
    assert!(
        (1..=MAX_COMPONENTS).contains(&n),
        "1..={MAX_COMPONENTS} components"
    );
    let mut out = Vec::new();
    let mut rgs = vec![0u8; n];
    loop {
        out.push(Placement { block: rgs.clone() });
        // Next restricted growth string: bump the last position that may grow (at most
        // one above the maximum before it), reset everything after it to 0.
        let mut i = n - 1;
        loop {
            if i == 0 {
                out.sort_by_key(Placement::compartments);
                return out;
            }
            let max_before = *rgs[..i].iter().max().expect("i >= 1");
            if rgs[i] <= max_before {
                rgs[i] += 1;
                rgs[i + 1..].fill(0);
                break;
            }
            i -= 1;
        }
    }
}

/// The Bell number B(n): how many set partitions n elements have (Bell triangle).
pub fn bell(n: usize) -> u64 {
    let mut row = vec![1u64];
    for _ in 0..n {
        let mut next = vec![*row.last().expect("rows are never empty")];
        for &x in &row {
            let last = *next.last().expect("starts with one entry");
            next.push(last + x);
        }
        row = next;
    }
    row[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bell_numbers() {
        let want = [1, 1, 2, 5, 15, 52, 203, 877, 4140];
        for (n, &b) in want.iter().enumerate() {
            assert_eq!(bell(n), b, "B({n})");
        }
    }

    #[test]
    fn enumeration_counts_are_bell_numbers_and_distinct() {
        for n in 1..=MAX_COMPONENTS {
            let all = all_placements(n);
            assert_eq!(all.len() as u64, bell(n), "{n} components");
            let mut sorted = all.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), all.len(), "duplicates among {n}");
        }
    }

    #[test]
    fn enumeration_starts_with_none_and_ends_with_all_apart() {
        let all = all_placements(4);
        assert_eq!(all[0], Placement::together(4));
        assert_eq!(all.last().unwrap().compartments(), 4);
        let per_count: Vec<usize> = (1..=4)
            .map(|k| all.iter().filter(|p| p.compartments() == k).count())
            .collect();
        // Stirling numbers of the second kind S(4, k).
        assert_eq!(per_count, [1, 7, 6, 1]);
        assert!(all
            .windows(2)
            .all(|w| w[0].compartments() <= w[1].compartments()));
    }

    #[test]
    fn three_components_by_name() {
        let n = names(&["app", "net", "netdev"]);
        let labels: Vec<String> = all_placements(3).iter().map(|p| p.label(&n)).collect();
        assert_eq!(
            labels,
            [
                "app,net,netdev",
                "app,net|netdev",
                "app,netdev|net",
                "app|net,netdev",
                "app|net|netdev"
            ]
        );
    }

    #[test]
    fn refinement_on_small_cases() {
        let n = names(&["a", "b", "c", "d"]);
        let p = |s: &str| Placement::parse(s, &n).unwrap();
        let none = p("a,b,c,d");
        let apart = p("a|b|c|d");
        for q in all_placements(4) {
            assert!(q.refines(&none), "{} refines NONE", q.label(&n));
            assert!(apart.refines(&q), "all-apart refines {}", q.label(&n));
            assert!(q.refines(&q));
            assert!(!q.strictly_refines(&q));
        }
        assert!(p("a|b|c,d").refines(&p("a,b|c,d")));
        assert!(p("a|b|c,d").covers_down(&p("a,b|c,d")));
        assert!(!p("a,c|b,d").refines(&p("a,b|c,d")));
        assert!(!p("a,b|c,d").refines(&p("a,c|b,d")));
        assert!(
            !p("a|b|c|d").covers_down(&p("a,b|c,d")),
            "two splits, not one"
        );
        // Antisymmetry: mutual refinement only for equal placements.
        let all = all_placements(4);
        for x in &all {
            for y in &all {
                if x.refines(y) && y.refines(x) {
                    assert_eq!(x, y);
                }
            }
        }
    }

    #[test]
    fn covers_count_like_a_partition_lattice() {
        // Each placement with k compartments of n components has C(k, 2) coarser
        // neighbours (merge any two compartments).
        let all = all_placements(4);
        for x in &all {
            let up = all.iter().filter(|y| x.covers_down(y)).count();
            let k = x.compartments();
            assert_eq!(up, k * (k - 1) / 2);
        }
    }

    #[test]
    fn parse_and_label_round_trip_and_reject_bad_specs() {
        let n = names(&["app", "vfs", "blkdev"]);
        for p in all_placements(3) {
            assert_eq!(Placement::parse(&p.label(&n), &n).unwrap(), p);
        }
        assert_eq!(
            Placement::parse(" blkdev | app , vfs ", &n).unwrap(),
            Placement::parse("app,vfs|blkdev", &n).unwrap()
        );
        assert!(matches!(
            Placement::parse("app|vfs|disk", &n),
            Err(SpecError::Unknown { .. })
        ));
        assert!(matches!(
            Placement::parse("app,vfs|vfs,blkdev", &n),
            Err(SpecError::Twice { .. })
        ));
        assert!(matches!(
            Placement::parse("app|vfs", &n),
            Err(SpecError::Missing { .. })
        ));
        assert!(matches!(
            Placement::parse("app||vfs,blkdev", &n),
            Err(SpecError::Empty { .. })
        ));
    }

    #[test]
    fn random_specs_never_panic_and_parse_to_what_they_say() {
        let n = names(&["app", "net", "netdev", "x"]);
        let pieces = [
            "app", "net", "netdev", "x", "y", ",", "|", " ", "||", ",,", "",
        ];
        let mut rng = flexos_testkit::Rng::new(7);
        for _ in 0..20_000 {
            let spec: String = (0..rng.below(12))
                .map(|_| pieces[rng.index(pieces.len())])
                .collect();
            if let Ok(p) = Placement::parse(&spec, &n) {
                // Whatever was accepted names every component once: its label parses
                // back to the same placement.
                assert_eq!(Placement::parse(&p.label(&n), &n), Ok(p), "{spec:?}");
            }
        }
    }

    #[test]
    fn config_names_compartments_after_their_first_component() {
        let n = names(&["app", "net", "netdev"]);
        let p = Placement::parse("app,netdev|net", &n).unwrap();
        assert_eq!(
            p.to_config(&n),
            "[[compartment]]\nname = \"app\"\ncomponents = [\"app\", \"netdev\"]\n\n\
             [[compartment]]\nname = \"net\"\ncomponents = [\"net\"]\n\n"
        );
    }
}
