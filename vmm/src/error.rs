//! Errors the monitor reports before or instead of running a guest, and the exit status
//! each one maps to (DESIGN section 8). Guest crashes are not errors: they are reports
//! (see `report`), and end the run with [`EXIT_CRASH`].

use std::path::PathBuf;

/// Command-line or placement mistake.
pub const EXIT_USAGE: i32 = 64;
/// The image is not something we can boot.
pub const EXIT_BAD_IMAGE: i32 = 65;
/// A file was not found or could not be read.
pub const EXIT_NO_INPUT: i32 = 66;
/// A compartment crashed or violated isolation.
pub const EXIT_CRASH: i32 = 70;
/// KVM is unavailable or failed.
pub const EXIT_KVM: i32 = 71;

/// Everything that can stop the monitor before a guest result exists.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{0}")]
    Usage(String),

    #[error("image '{path}' not found; build the images with scripts/build")]
    ImageNotFound { path: PathBuf },

    #[error("image '{path}' is unreadable: {source}")]
    ImageUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("placement file '{path}' is unreadable: {source}")]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("image '{path}' is a directory; pass an ELF file such as target/images/hello.elf")]
    ImageIsDirectory { path: PathBuf },

    #[error("image '{path}' is not bootable: {reason}")]
    BadImage { path: PathBuf, reason: String },

    #[error("{what}: {source}; KVM is required: load the kvm module (kvm_intel, kvm_amd or kvm_pvm) and make /dev/kvm readable and writable by this user (kvm group)")]
    KvmUnavailable {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("KVM {what} failed: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },

    #[error("KVM could not run the guest: {0}")]
    KvmRun(String),

    #[error("guest memory: {0}")]
    Memory(String),

    #[error(transparent)]
    Debug(#[from] crate::debug::DebugError),
}

impl VmmError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmmError::Usage(_) => EXIT_USAGE,
            VmmError::ImageNotFound { .. }
            | VmmError::ImageUnreadable { .. }
            | VmmError::ImageIsDirectory { .. }
            | VmmError::ConfigUnreadable { .. } => EXIT_NO_INPUT,
            VmmError::BadImage { .. } => EXIT_BAD_IMAGE,
            VmmError::KvmUnavailable { .. } | VmmError::Kvm { .. } | VmmError::KvmRun(_) => {
                EXIT_KVM
            }
            VmmError::Memory(_) => EXIT_KVM,
            VmmError::Debug(crate::debug::DebugError::KickHandler(_)) => EXIT_KVM,
            VmmError::Debug(_) => EXIT_USAGE,
        }
    }

    /// Shorthand for a KVM ioctl failure.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { what, source }
    }
}

pub type Result<T> = std::result::Result<T, VmmError>;
