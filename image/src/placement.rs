//! Which component runs in which compartment (docs/usage.md, components and placement).
//!
//! The image says what it has: its [`Catalog`] of components and default splits, read
//! from the ELF section `flexos_abi::COMPONENT_SECTION`. The user picks a split with
//! `--compartments N` or writes one in a `--config` TOML file. Either way the result
//! is a validated [`Placement`]; every mistake is a usage error that lists what the
//! image offers.

use std::fmt::Write;
use std::io::Read;
use std::path::Path;

use flexos_abi::{
    name_str, ComponentTable, COMPONENT_MAGIC, COMPONENT_SECTION, COMPONENT_VERSION,
    MAX_COMPARTMENTS, MAX_COMPONENTS, MAX_SPLITS, NAME_LEN,
};
use object::{Object, ObjectSection};
use serde::Deserialize;

use crate::elf::Image;
use crate::error::{ConfigError, ImageError, PlacementError, Result, RuleError, TableError};

/// The name of the only component of an image that declares no component table.
pub const IMPLICIT_COMPONENT: &str = "app";

/// Largest placement file the monitor reads; real ones are a few hundred bytes.
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Reads a `--config` file: a regular file of at most [`MAX_CONFIG_FILE`] bytes of
/// UTF-8 (so `/dev/zero`, a FIFO or a huge file is refused instead of read forever).
pub fn read_config(path: &Path) -> Result<String> {
    let unreadable = |source| ImageError::ConfigUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let refuse =
        |why: String| unreadable(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    let (file, meta) = crate::input_file::open_for_reading(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let too_big = || refuse(format!("larger than {} KiB", MAX_CONFIG_FILE >> 10));
    if meta.len() > MAX_CONFIG_FILE {
        return Err(too_big());
    }
    // The file may grow after the check: never read more than the limit.
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(too_big());
    }
    Ok(text)
}

/// One compartment of a placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompartmentPlan {
    pub name: String,
    pub components: Vec<String>,
}

/// A complete, validated placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub compartments: Vec<CompartmentPlan>,
    /// Component index (catalog order) -> compartment id.
    pub assignment: Vec<u8>,
}

/// What the image offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    pub components: Vec<String>,
    /// Default splits, by compartment count, ascending.
    pub splits: Vec<Placement>,
}

fn bad_table(image: &Image, source: TableError) -> ImageError {
    ImageError::Table {
        path: image.path.clone(),
        source,
    }
}

fn text(
    n: &[u8; NAME_LEN],
    what: impl FnOnce() -> String,
) -> std::result::Result<String, TableError> {
    match name_str(n) {
        Some("") => Err(TableError::EmptyName { what: what() }),
        Some(s) => Ok(s.to_string()),
        None => Err(TableError::NotUtf8 { what: what() }),
    }
}

impl Catalog {
    /// Reads the image's component table; an image without one has one component,
    /// [`IMPLICIT_COMPONENT`], and runs in one compartment.
    pub fn from_image(image: &Image) -> Result<Catalog> {
        let file = object::File::parse(&*image.bytes)
            .map_err(|e| bad_table(image, TableError::Elf(e.to_string())))?;
        let Some(section) = file.section_by_name(COMPONENT_SECTION) else {
            let name = IMPLICIT_COMPONENT.to_string();
            return Ok(Catalog {
                components: vec![name.clone()],
                splits: vec![Placement {
                    compartments: vec![CompartmentPlan {
                        name: name.clone(),
                        components: vec![name],
                    }],
                    assignment: vec![0],
                }],
            });
        };
        let data = section
            .data()
            .map_err(|e| bad_table(image, TableError::Section(e.to_string())))?;
        Self::parse(data).map_err(|why| bad_table(image, why))
    }

    /// Decodes and validates the raw table bytes (untrusted: they come from a file).
    pub fn parse(data: &[u8]) -> std::result::Result<Catalog, TableError> {
        let size = std::mem::size_of::<ComponentTable>();
        if data.len() < size {
            return Err(TableError::Short {
                got: data.len(),
                want: size,
            });
        }
        // SAFETY: `data` holds at least size_of::<ComponentTable>() bytes and the table is
        // repr(C) plain integers and byte arrays, valid for any bit pattern;
        // read_unaligned copies it out without alignment requirements.
        let table: ComponentTable =
            unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<ComponentTable>()) };
        if table.magic != COMPONENT_MAGIC {
            return Err(TableError::Magic);
        }
        if table.version != COMPONENT_VERSION {
            return Err(TableError::Version(table.version));
        }
        let count = table.component_count as usize;
        if count == 0 || count > MAX_COMPONENTS {
            return Err(TableError::ComponentCount(count));
        }
        let mut components = Vec::with_capacity(count);
        for (i, n) in table.components[..count].iter().enumerate() {
            let name = text(n, || format!("component {i}"))?;
            if components.contains(&name) {
                return Err(TableError::DeclaredTwice(name));
            }
            components.push(name);
        }
        let split_count = table.split_count as usize;
        if split_count > MAX_SPLITS {
            return Err(TableError::SplitCount(split_count));
        }
        let mut splits: Vec<Placement> = Vec::new();
        for split in &table.splits[..split_count] {
            let n = split.compartments as usize;
            if n == 0 || n > MAX_COMPARTMENTS {
                return Err(TableError::SplitSize(n));
            }
            let mut compartments = Vec::with_capacity(n);
            for (c, name) in split.names[..n].iter().enumerate() {
                compartments.push(CompartmentPlan {
                    name: text(name, || format!("compartment {c} of the {n}-way split"))?,
                    components: Vec::new(),
                });
            }
            let assignment = split.placement[..count].to_vec();
            for (i, &c) in assignment.iter().enumerate() {
                let plan =
                    compartments
                        .get_mut(c as usize)
                        .ok_or_else(|| TableError::OutsideSplit {
                            n,
                            component: components[i].clone(),
                            compartment: c,
                        })?;
                plan.components.push(components[i].clone());
            }
            if splits.iter().any(|s| s.compartments.len() == n) {
                return Err(TableError::TwoSplits(n));
            }
            let placement = Placement {
                compartments,
                assignment,
            };
            check(&placement).map_err(|rule| TableError::Rule { n, rule })?;
            splits.push(placement);
        }
        splits.sort_by_key(|s| s.compartments.len());
        Ok(Catalog { components, splits })
    }

    /// One line saying what the image offers, for error messages.
    pub fn offer(&self) -> String {
        let counts: Vec<String> = self
            .splits
            .iter()
            .map(|s| s.compartments.len().to_string())
            .collect();
        format!(
            "the image offers components {} and default splits for --compartments {}",
            self.components.join(", "),
            if counts.is_empty() {
                "(none)".to_string()
            } else {
                counts.join(", ")
            }
        )
    }

    /// The listing printed by `--list-components`.
    pub fn listing(&self, image: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "components of {}:", image.display());
        for c in &self.components {
            let _ = writeln!(s, "  {c}");
        }
        let _ = writeln!(s, "default splits:");
        for split in &self.splits {
            let parts: Vec<String> = split
                .compartments
                .iter()
                .map(|c| format!("{}=[{}]", c.name, c.components.join(", ")))
                .collect();
            let _ = writeln!(
                s,
                "  --compartments {}: {}",
                split.compartments.len(),
                parts.join(" ")
            );
        }
        s
    }

    /// The image's default split into `n` compartments.
    pub fn default_split(&self, n: u32) -> Result<Placement> {
        self.splits
            .iter()
            .find(|s| s.compartments.len() == n as usize)
            .cloned()
            .ok_or_else(|| {
                PlacementError::NoSplit {
                    n,
                    offer: self.offer(),
                }
                .into()
            })
    }

    /// A placement from a `--config` file's text.
    pub fn placement_from_config(&self, path: &Path, text: &str) -> Result<Placement> {
        let usage = |why: ConfigError| -> ImageError {
            PlacementError::Config {
                path: path.to_path_buf(),
                why,
                offer: self.offer(),
            }
            .into()
        };
        let file: ConfigFile = toml::from_str(text)
            .map_err(|e| usage(ConfigError::Syntax(e.message().trim().to_string())))?;
        if file.compartment.is_empty() {
            return Err(usage(ConfigError::NoEntries));
        }
        if file.compartment.len() > MAX_COMPARTMENTS {
            return Err(usage(ConfigError::TooMany(file.compartment.len())));
        }
        let mut assignment = vec![u8::MAX; self.components.len()];
        let mut compartments = Vec::new();
        for (c, entry) in file.compartment.into_iter().enumerate() {
            for comp in &entry.components {
                let i = self
                    .components
                    .iter()
                    .position(|k| k == comp)
                    .ok_or_else(|| {
                        usage(ConfigError::UnknownComponent {
                            component: comp.clone(),
                            compartment: entry.name.clone(),
                        })
                    })?;
                if assignment[i] != u8::MAX {
                    return Err(usage(ConfigError::PlacedTwice(comp.clone())));
                }
                assignment[i] = u8::try_from(c).expect("at most MAX_COMPARTMENTS, checked above");
            }
            compartments.push(CompartmentPlan {
                name: entry.name,
                components: entry.components,
            });
        }
        if let Some(i) = assignment.iter().position(|&c| c == u8::MAX) {
            return Err(usage(ConfigError::NotPlaced(self.components[i].clone())));
        }
        let placement = Placement {
            compartments,
            assignment,
        };
        check(&placement).map_err(|rule| usage(rule.into()))?;
        Ok(placement)
    }
}

/// Rules every placement obeys, whoever wrote it.
fn check(p: &Placement) -> std::result::Result<(), RuleError> {
    for (i, c) in p.compartments.iter().enumerate() {
        if c.name.is_empty() || c.name.len() > NAME_LEN {
            return Err(RuleError::NameLength(c.name.clone()));
        }
        if p.compartments[..i].iter().any(|o| o.name == c.name) {
            return Err(RuleError::DuplicateName(c.name.clone()));
        }
        if c.components.is_empty() {
            return Err(RuleError::Empty(c.name.clone()));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    compartment: Vec<ConfigCompartment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigCompartment {
    name: String,
    components: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use flexos_abi::{name, Split};

    fn table() -> ComponentTable {
        let mut t = ComponentTable::EMPTY;
        t.component_count = 3;
        t.components[0] = name("app");
        t.components[1] = name("net");
        t.components[2] = name("netdev");
        t.split_count = 2;
        t.splits[0] = Split {
            compartments: 1,
            ..Split::EMPTY
        };
        t.splits[0].names[0] = name("all");
        t.splits[1] = Split {
            compartments: 2,
            ..Split::EMPTY
        };
        t.splits[1].names[0] = name("app");
        t.splits[1].names[1] = name("net");
        t.splits[1].placement[1] = 1;
        t.splits[1].placement[2] = 1;
        t
    }

    fn bytes(t: &ComponentTable) -> Vec<u8> {
        // SAFETY: ComponentTable is repr(C) plain data; we only read its bytes.
        unsafe {
            std::slice::from_raw_parts(
                (t as *const ComponentTable).cast::<u8>(),
                std::mem::size_of::<ComponentTable>(),
            )
        }
        .to_vec()
    }

    fn catalog() -> Catalog {
        Catalog::parse(&bytes(&table())).unwrap()
    }

    #[test]
    fn parses_components_and_splits() {
        let c = catalog();
        assert_eq!(c.components, ["app", "net", "netdev"]);
        let two = c.default_split(2).unwrap();
        assert_eq!(two.compartments[1].components, ["net", "netdev"]);
        assert_eq!(two.assignment, [0, 1, 1]);
        assert!(c.default_split(3).unwrap_err().to_string().contains(
            "offers components app, net, netdev and default splits for --compartments 1, 2"
        ));
        assert_eq!(
            c.listing(Path::new("x.elf")),
            "components of x.elf:\n  app\n  net\n  netdev\ndefault splits:\n  --compartments 1: all=[app, net, netdev]\n  --compartments 2: app=[app] net=[net, netdev]\n"
        );
    }

    #[test]
    fn hostile_tables_are_rejected() {
        let mut t = table();
        t.magic = 0;
        assert!(Catalog::parse(&bytes(&t)).is_err());
        let mut t = table();
        t.component_count = 99;
        assert_eq!(
            Catalog::parse(&bytes(&t)).unwrap_err(),
            TableError::ComponentCount(99)
        );
        let mut t = table();
        t.splits[1].placement[2] = 7;
        assert_eq!(
            Catalog::parse(&bytes(&t)).unwrap_err().to_string(),
            "the 2-way split puts 'netdev' in compartment 7"
        );
        let mut t = table();
        t.components[2] = name("net");
        assert_eq!(
            Catalog::parse(&bytes(&t)).unwrap_err(),
            TableError::DeclaredTwice("net".into())
        );
        let mut t = table();
        t.splits[1].placement[0] = 1; // compartment 0 left empty
        assert_eq!(
            Catalog::parse(&bytes(&t)).unwrap_err().to_string(),
            "the 2-way split: compartment 'app' is empty"
        );
        assert!(matches!(
            Catalog::parse(&bytes(&table())[..100]),
            Err(TableError::Short { got: 100, .. })
        ));
    }

    #[test]
    fn mutated_tables_never_panic_and_what_passes_is_consistent() {
        let good = bytes(&table());
        let mut rng = flexos_testkit::Rng::new(7);
        for _ in 0..20_000 {
            let mut b = good.clone();
            rng.mutate(&mut b);
            if let Ok(c) = Catalog::parse(&b) {
                for split in &c.splits {
                    assert_eq!(split.assignment.len(), c.components.len());
                    let placed: usize = split.compartments.iter().map(|p| p.components.len()).sum();
                    assert_eq!(placed, c.components.len());
                    assert!(split.compartments.iter().all(|p| !p.components.is_empty()));
                }
            }
        }
    }

    #[test]
    fn mutated_config_files_never_panic() {
        let c = catalog();
        let good = b"[[compartment]]\nname = \"a\"\ncomponents = [\"app\"]\n[[compartment]]\nname = \"b\"\ncomponents = [\"netdev\", \"net\"]\n";
        let mut rng = flexos_testkit::Rng::new(11);
        for _ in 0..5_000 {
            let mut b = good.to_vec();
            rng.mutate(&mut b);
            let text = String::from_utf8_lossy(&b);
            if let Ok(p) = c.placement_from_config(Path::new("p.toml"), &text) {
                assert_eq!(p.assignment.len(), 3);
                assert!(p
                    .assignment
                    .iter()
                    .all(|&k| (k as usize) < p.compartments.len()));
            }
        }
    }

    #[test]
    fn config_files_are_validated() {
        let c = catalog();
        let p = Path::new("p.toml");
        let good = "[[compartment]]\nname = \"a\"\ncomponents = [\"app\"]\n[[compartment]]\nname = \"b\"\ncomponents = [\"netdev\", \"net\"]\n";
        let placement = c.placement_from_config(p, good).unwrap();
        assert_eq!(placement.assignment, [0, 1, 1]);
        let cases = [
            ("[[compartment]]\nname = \"a\"\ncomponents = [\"app\", \"net\", \"disk\"]\n", "unknown component 'disk'"),
            ("[[compartment]]\nname = \"a\"\ncomponents = [\"app\", \"net\", \"net\", \"netdev\"]\n", "placed twice"),
            ("[[compartment]]\nname = \"a\"\ncomponents = [\"app\", \"net\"]\n", "'netdev' is not placed"),
            ("[[compartment]]\nname = \"a\"\ncomponents = [\"app\", \"net\", \"netdev\"]\n[[compartment]]\nname = \"b\"\ncomponents = []\n", "'b' is empty"),
            ("", "no [[compartment]]"),
            ("[[compartment]]\nname = \"a\"\ncomponent = [\"app\"]\n", "not a valid placement file"),
            ("[[compartment]]\nname = \"a\"\ncomponents = [\"app\", \"net\", \"netdev\"]\n[[compartment]]\nname = \"a\"\ncomponents = []\n", "named 'a'"),
        ];
        for (text, want) in cases {
            let err = c.placement_from_config(p, text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(
                err.contains("the image offers components app, net, netdev"),
                "{err}"
            );
        }
    }
}
