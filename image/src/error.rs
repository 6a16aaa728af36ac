//! What can be wrong with an image, a component table or a placement, and the exit
//! status each one means to the monitor and its tools (sysexits: 64 usage, 65 data,
//! 66 input): [`ImageError::exit_code`] is the one place that decides.

use std::io;
use std::path::PathBuf;

use flexos_abi::{
    COMPONENT_SECTION, COMPONENT_VERSION, MAX_COMPARTMENTS, MAX_COMPONENTS, MAX_SPLITS, NAME_LEN,
};

/// Command-line or placement mistake (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;
/// The image is not something the monitor can boot (EX_DATAERR).
pub const EXIT_BAD_IMAGE: i32 = 65;
/// A file was not found or could not be read (EX_NOINPUT).
pub const EXIT_NO_INPUT: i32 = 66;

/// Why an image, its component table or a placement cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image '{path}' not found; build the images with scripts/build")]
    NotFound { path: PathBuf },

    #[error("image '{path}' is unreadable: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("image '{path}' is a directory; pass an ELF file such as target/images/hello.elf")]
    IsDirectory { path: PathBuf },

    #[error("image '{path}' is not bootable: {reason}")]
    Bad { path: PathBuf, reason: String },

    #[error("image '{path}' is not bootable: its component table ({COMPONENT_SECTION}) is invalid: {source}")]
    Table {
        path: PathBuf,
        #[source]
        source: TableError,
    },

    #[error("placement file '{path}' is unreadable: {source}")]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Placement(#[from] PlacementError),
}

impl ImageError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ImageError::NotFound { .. }
            | ImageError::Unreadable { .. }
            | ImageError::IsDirectory { .. }
            | ImageError::ConfigUnreadable { .. } => EXIT_NO_INPUT,
            ImageError::Bad { .. } | ImageError::Table { .. } => EXIT_BAD_IMAGE,
            ImageError::Placement(_) => EXIT_USAGE,
        }
    }
}

/// Why a component table (untrusted bytes from the image file) is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("unreadable ELF: {0}")]
    Elf(String),
    #[error("unreadable: {0}")]
    Section(String),
    #[error("{got} bytes, expected {want}")]
    Short { got: usize, want: usize },
    #[error("bad magic")]
    Magic,
    #[error("version {0} (this monitor reads version {COMPONENT_VERSION})")]
    Version(u32),
    #[error("{0} components (want 1..={MAX_COMPONENTS})")]
    ComponentCount(usize),
    #[error("{what} has an empty name")]
    EmptyName { what: String },
    #[error("{what} name is not UTF-8")]
    NotUtf8 { what: String },
    #[error("component '{0}' is declared twice")]
    DeclaredTwice(String),
    #[error("{0} splits (at most {MAX_SPLITS})")]
    SplitCount(usize),
    #[error("a split into {0} compartments")]
    SplitSize(usize),
    #[error("the {n}-way split puts '{component}' in compartment {compartment}")]
    OutsideSplit {
        n: usize,
        component: String,
        compartment: u8,
    },
    #[error("two {0}-way splits")]
    TwoSplits(usize),
    #[error("the {n}-way split: {rule}")]
    Rule { n: usize, rule: RuleError },
}

/// A rule every placement obeys, whoever wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("compartment name '{0}' must be 1..={NAME_LEN} bytes")]
    NameLength(String),
    #[error("two compartments are named '{0}'")]
    DuplicateName(String),
    #[error("compartment '{0}' is empty")]
    Empty(String),
}

/// A placement the user asked for that the image cannot give (a usage error). `offer`
/// is what the image has, for the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("--compartments {n}: the image has no {n}-way split; {offer}; or give a placement with --config")]
    NoSplit { n: u32, offer: String },
    #[error("{path}: {why}; {offer}")]
    Config {
        path: PathBuf,
        why: ConfigError,
        offer: String,
    },
}

/// What is wrong with a `--config` placement file's contents.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("not a valid placement file: {0}")]
    Syntax(String),
    #[error("no [[compartment]] entries")]
    NoEntries,
    #[error("{0} compartments; at most {MAX_COMPARTMENTS}")]
    TooMany(usize),
    #[error("unknown component '{component}' in compartment '{compartment}'")]
    UnknownComponent {
        component: String,
        compartment: String,
    },
    #[error("component '{0}' is placed twice")]
    PlacedTwice(String),
    #[error("component '{0}' is not placed")]
    NotPlaced(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
}

pub type Result<T> = std::result::Result<T, ImageError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status() {
        let io = || io::Error::from_raw_os_error(2);
        let path = || PathBuf::from("x");
        assert_eq!(ImageError::NotFound { path: path() }.exit_code(), 66);
        assert_eq!(
            ImageError::Unreadable {
                path: path(),
                source: io()
            }
            .exit_code(),
            66
        );
        assert_eq!(ImageError::IsDirectory { path: path() }.exit_code(), 66);
        assert_eq!(
            ImageError::ConfigUnreadable {
                path: path(),
                source: io()
            }
            .exit_code(),
            66
        );
        assert_eq!(
            ImageError::Bad {
                path: path(),
                reason: "r".into()
            }
            .exit_code(),
            65
        );
        assert_eq!(
            ImageError::Table {
                path: path(),
                source: TableError::Magic
            }
            .exit_code(),
            65
        );
        assert_eq!(
            ImageError::from(PlacementError::NoSplit {
                n: 9,
                offer: "o".into()
            })
            .exit_code(),
            64
        );
    }
}
