//! Errors the monitor reports before or instead of running a guest, and the exit status
//! each one maps to (docs/usage.md, exit status and errors): [`VmmError::exit_code`] is the one place that
//! decides. Guest crashes are not errors: they are reports (see `report`), and end the
//! run with [`EXIT_CRASH`]; a refused hypercall is a [`HypercallError`] inside one.
//!
//! [`HypercallError`]: crate::hypercall::HypercallError

use devices::block::DiskError;
use devices::net::TapError;
use flexos_image::ImageError;

pub use flexos_image::error::{EXIT_BAD_IMAGE, EXIT_NO_INPUT, EXIT_USAGE};
/// A compartment crashed or violated isolation.
pub const EXIT_CRASH: i32 = 70;
/// A file the run needs is in use by another process (a `--disk` another monitor holds):
/// sysexits' EX_TEMPFAIL, since the same command works once that one ends.
pub const EXIT_IN_USE: i32 = 75;
/// KVM is unavailable or failed, or the host could not give the run what it needs
/// (memory, threads): sysexits' EX_OSERR.
pub const EXIT_KVM: i32 = 71;
/// The run was stopped by SIGINT (128 + 2).
pub const EXIT_SIGINT: i32 = 130;
/// The run was stopped by SIGTERM (128 + 15).
pub const EXIT_SIGTERM: i32 = 143;

/// Everything that can stop the monitor before a guest result exists.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{0}")]
    Usage(String),

    /// The image, its component table or the placement (exit 64, 65 or 66: see
    /// [`ImageError::exit_code`]).
    #[error(transparent)]
    Image(#[from] ImageError),

    #[error("{what}: {source}; KVM is required: load the kvm module (kvm_intel, kvm_amd or kvm_pvm) and make /dev/kvm readable and writable by this user (kvm group)")]
    KvmUnavailable {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A thread's seccomp filter could not be installed (see `sandbox`).
    #[error("sandbox: {0} (--no-seccomp runs without the sandbox)")]
    Sandbox(String),

    #[error("KVM {what} failed: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },

    #[error("KVM could not run the guest: internal error (suberror {suberror})")]
    KvmInternal { suberror: u32 },

    #[error("KVM refused to enter the guest (hardware entry failure reason {reason:#x})")]
    EntryFailed { reason: u64 },

    #[error("KVM reports a TSC frequency of 0 kHz; guest time cannot be measured")]
    TscUnknown,

    #[error("the MSR list for {what}: {detail}")]
    MsrList { what: &'static str, detail: String },

    #[error("KVM {what} transferred {done} of {want} MSRs")]
    MsrCount {
        what: &'static str,
        done: usize,
        want: usize,
    },

    /// Host memory for the guest (mapping, writing the machine state) failed.
    #[error("guest memory: {0}")]
    Memory(#[from] crate::memory::MemoryError),

    #[error("cannot {what} doorbell eventfds: {source}")]
    Doorbell {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[cfg(feature = "gdb")]
    #[error(transparent)]
    Debug(#[from] crate::debug::error::DebugError),

    #[error("cannot start a vCPU thread: {0}")]
    VcpuThread(#[source] std::io::Error),

    #[error("cannot start the gdb thread: {0}")]
    GdbThread(#[source] std::io::Error),

    #[error("every vCPU thread ended without an outcome")]
    NoOutcome,

    /// `--disk`: the file cannot be opened (exit 66) or has an unusable size (exit 64).
    #[error("--disk: {0}; {hint}", hint = disk_hint(.0))]
    Disk(#[from] DiskError),

    /// `--net`: the tap cannot be used (missing: exit 66; busy, no permission: 71).
    #[error("--net: {0}{hint}", hint = tap_hint(.0))]
    Tap(#[from] TapError),

    #[error("cannot set up the {what}: {source}")]
    Device {
        what: &'static str,
        #[source]
        source: devices::virtio::mmio::TransportError,
    },

    #[error("cannot set up SIGINT/SIGTERM handling: {0}")]
    Signals(#[source] std::io::Error),

    #[error("cannot read this process's CPU affinity: {0}")]
    Affinity(#[source] std::io::Error),

    /// The boot info cannot hold what the plan says: the plan's own limits keep every
    /// count far below, so this is the monitor's bug, not the user's (exit 71).
    #[error("the boot info cannot hold the run ({0}): a monitor bug, please report it")]
    BootInfo(String),
}

impl VmmError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmmError::Usage(_) => EXIT_USAGE,
            // The host's seccomp refused a filter (EX_OSERR, like KVM's failures).
            VmmError::Sandbox(_) => EXIT_KVM,
            VmmError::Image(e) => e.exit_code(),
            VmmError::Disk(DiskError::Open { .. } | DiskError::NotAFile { .. }) => EXIT_NO_INPUT,
            VmmError::Disk(DiskError::Size { .. }) => EXIT_USAGE,
            VmmError::Disk(DiskError::Locked { .. }) => EXIT_IN_USE,
            VmmError::Tap(TapError::Missing { .. }) => EXIT_NO_INPUT,
            VmmError::Tap(TapError::BadName { .. } | TapError::NotATap { .. }) => EXIT_USAGE,
            VmmError::Tap(
                TapError::Busy { .. } | TapError::Permission { .. } | TapError::Other { .. },
            ) => EXIT_KVM,
            VmmError::KvmUnavailable { .. }
            | VmmError::Kvm { .. }
            | VmmError::KvmInternal { .. }
            | VmmError::EntryFailed { .. }
            | VmmError::TscUnknown
            | VmmError::MsrList { .. }
            | VmmError::MsrCount { .. } => EXIT_KVM,
            // Not KVM's fault, but the host's: the same status (EX_OSERR), its own text.
            VmmError::Memory(_)
            | VmmError::Doorbell { .. }
            | VmmError::Device { .. }
            | VmmError::VcpuThread(_)
            | VmmError::GdbThread(_)
            | VmmError::NoOutcome
            | VmmError::Signals(_)
            | VmmError::Affinity(_)
            | VmmError::BootInfo(_) => EXIT_KVM,
            #[cfg(feature = "gdb")]
            VmmError::Debug(crate::debug::error::DebugError::KickHandler(_)) => EXIT_KVM,
            #[cfg(feature = "gdb")]
            VmmError::Debug(_) => EXIT_USAGE,
        }
    }

    /// Shorthand for a KVM ioctl failure.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { what, source }
    }
}

pub type Result<T> = std::result::Result<T, VmmError>;

/// What to do about a `--disk` file the device cannot use.
fn disk_hint(e: &DiskError) -> &'static str {
    match e {
        DiskError::Open { .. } => {
            "give an existing file this user can read and write (or read, with ,readonly)"
        }
        DiskError::NotAFile { .. } => "give a regular file (a disk image)",
        DiskError::Locked { .. } => {
            "a disk has one writer or any number of readers (,readonly); wait for that run to end, or give a copy"
        }
        DiskError::Size { .. } => {
            "give a file of whole 512-byte sectors (e.g. truncate -s 64M, or mkfs.fat -C)"
        }
    }
}

/// What to do about a `--net` tap the device cannot use.
fn tap_hint(e: &TapError) -> &'static str {
    match e {
        TapError::Missing { .. } => " (create one, e.g. scripts/net-up)",
        TapError::NotATap { .. } => " (give a tap interface, e.g. from scripts/net-up)",
        TapError::Busy { .. } => " (stop it, or give another tap)",
        TapError::Permission { .. } => {
            " (run as root, or create the tap for this user: ip tuntap add NAME mode tap user USER)"
        }
        TapError::BadName { .. } | TapError::Other { .. } => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_documented_status() {
        let io = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let cases = [
            (VmmError::Usage("u".into()), EXIT_USAGE),
            // The image's own errors keep their statuses (flexos-image decides them).
            (
                VmmError::Image(ImageError::NotFound { path: "x".into() }),
                EXIT_NO_INPUT,
            ),
            (
                VmmError::Image(ImageError::Bad {
                    path: "x".into(),
                    reason: "r".into(),
                }),
                EXIT_BAD_IMAGE,
            ),
            (
                VmmError::KvmUnavailable {
                    what: "w".into(),
                    source: io(),
                },
                EXIT_KVM,
            ),
            (
                VmmError::Kvm {
                    what: "KVM_RUN",
                    source: kvm_ioctls::Error::new(libc::EFAULT),
                },
                EXIT_KVM,
            ),
            (VmmError::KvmInternal { suberror: 3 }, EXIT_KVM),
            (VmmError::EntryFailed { reason: 7 }, EXIT_KVM),
            (VmmError::TscUnknown, EXIT_KVM),
            (VmmError::Sandbox("s".into()), EXIT_KVM),
            (
                VmmError::MsrList {
                    what: "KVM_GET_MSRS",
                    detail: "d".into(),
                },
                EXIT_KVM,
            ),
            (
                VmmError::Memory(crate::memory::MemoryError::Layout("m")),
                EXIT_KVM,
            ),
            (
                VmmError::Doorbell {
                    what: "create",
                    source: io(),
                },
                EXIT_KVM,
            ),
            (VmmError::VcpuThread(io()), EXIT_KVM),
            (VmmError::BootInfo("b".into()), EXIT_KVM),
            (VmmError::Signals(io()), EXIT_KVM),
            (
                VmmError::Disk(DiskError::Open {
                    path: "d".into(),
                    source: io(),
                }),
                EXIT_NO_INPUT,
            ),
            (
                VmmError::Disk(DiskError::NotAFile { path: "d".into() }),
                EXIT_NO_INPUT,
            ),
            (
                VmmError::Disk(DiskError::Size {
                    path: "d".into(),
                    size: 513,
                }),
                EXIT_USAGE,
            ),
            (
                VmmError::Disk(DiskError::Locked {
                    path: "d".into(),
                    holder: "h".into(),
                }),
                EXIT_IN_USE,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.exit_code(), want, "{e}");
        }
    }

    #[test]
    fn tap_errors_map_to_66_64_and_71_with_a_hint() {
        let name = || "flx0".to_string();
        let cases = [
            (TapError::Missing { name: name() }, EXIT_NO_INPUT, "--net: no tap device flx0 in this network namespace (create one, e.g. scripts/net-up)"),
            (TapError::NotATap { name: name() }, EXIT_USAGE, "--net: flx0 is not a tap device (give a tap interface, e.g. from scripts/net-up)"),
            (TapError::BadName { name: "".into(), why: "it is empty" }, EXIT_USAGE, "--net: tap name \"\" is not an interface name: it is empty"),
            (TapError::Busy { name: name() }, EXIT_KVM, "--net: tap device flx0 is busy (another process has it open) (stop it, or give another tap)"),
            (
                TapError::Permission { name: name(), source: std::io::Error::from_raw_os_error(libc::EPERM) },
                EXIT_KVM,
                "--net: no permission to open tap device flx0: Operation not permitted (os error 1) (run as root, or create the tap for this user: ip tuntap add NAME mode tap user USER)",
            ),
            (
                TapError::Other { name: name(), what: "TUNSETVNETHDRSZ", source: std::io::Error::from_raw_os_error(libc::EINVAL) },
                EXIT_KVM,
                "--net: tap device flx0: TUNSETVNETHDRSZ: Invalid argument (os error 22)",
            ),
        ];
        for (e, code, text) in cases {
            let e = VmmError::Tap(e);
            assert_eq!(e.exit_code(), code, "{e}");
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn msr_and_memory_errors_say_what_failed() {
        let msr = VmmError::MsrCount {
            what: "KVM_GET_MSRS",
            done: 0,
            want: 1,
        };
        assert_eq!(msr.to_string(), "KVM KVM_GET_MSRS transferred 0 of 1 MSRs");
        assert!(!msr.to_string().contains("memory"));
        assert!(VmmError::TscUnknown
            .to_string()
            .contains("TSC frequency of 0"));
        let size = VmmError::Disk(DiskError::Size {
            path: "d.img".into(),
            size: 1000,
        });
        assert_eq!(
            size.to_string(),
            "--disk: disk d.img is 1000 bytes, not a non-zero multiple of 512; give a file of whole 512-byte sectors (e.g. truncate -s 64M, or mkfs.fat -C)"
        );
    }
}
