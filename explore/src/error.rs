//! Why an exploration could not start or finish, and the exit status each one means
//! (sysexits, as the monitor's): [`Fail::exit_code`] is the one place that decides.

use std::io;
use std::path::PathBuf;

use flexos_image::error::{EXIT_NO_INPUT, EXIT_USAGE};
use flexos_image::ImageError;

use crate::search::SearchError;

/// A required program or facility is missing (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// An output file or directory cannot be created (EX_CANTCREAT).
pub const EXIT_CANT_CREATE: i32 = 73;
/// The exploration itself failed (a placement's runs are reported, not this).
pub const EXIT_FAILED: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Fail {
    /// A command-line mistake.
    #[error("{0}")]
    Usage(String),
    /// The image or a placement (its own status: 64, 65 or 66).
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("no monitor at {} (run scripts/build, or give --vmm)", .0.display())]
    NoMonitor(PathBuf),
    /// What the workload needs is missing (a tool, a namespace).
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot {what} {}: {source}", path.display())]
    CannotCreate {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Search(#[from] SearchError),
}

impl Fail {
    pub fn exit_code(&self) -> i32 {
        match self {
            Fail::Usage(_) => EXIT_USAGE,
            Fail::Image(e) => e.exit_code(),
            Fail::NoMonitor(_) => EXIT_NO_INPUT,
            Fail::Unavailable(_) => EXIT_UNAVAILABLE,
            Fail::CannotCreate { .. } => EXIT_CANT_CREATE,
            Fail::Search(_) => EXIT_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status() {
        let io = || io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(Fail::Usage("u".into()).exit_code(), 64);
        assert_eq!(Fail::NoMonitor("/x".into()).exit_code(), 66);
        assert_eq!(Fail::Unavailable("t".into()).exit_code(), 69);
        assert_eq!(
            Fail::CannotCreate {
                what: "create",
                path: "/x".into(),
                source: io()
            }
            .exit_code(),
            73
        );
        assert_eq!(Fail::Search(SearchError::NoBaseline).exit_code(), 1);
        assert_eq!(
            Fail::from(ImageError::NotFound { path: "x".into() }).exit_code(),
            66
        );
    }
}
