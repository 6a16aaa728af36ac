//! `flexos-vmm` as a library: everything the binary does, so that fuzz targets and
//! tools can drive the parsers (image, component table, placement files) directly.
//! The binary (`main.rs`) only parses the command line and maps results to exit codes.

// Guest- and file-supplied values are narrowed with checked conversions; a cast that
// truncates on purpose carries an `#[allow]` that says why.
#![warn(clippy::cast_possible_truncation)]

pub mod arch;
pub mod cli;
pub mod compartment;
pub mod console;
#[cfg(feature = "gdb")]
pub mod core_dir;
#[cfg(feature = "gdb")]
pub mod coredump;
#[cfg(feature = "gdb")]
pub mod debug;
pub mod error;
pub mod escape;
pub use flexos_image::{elf as image, input_file, placement, symbols};
pub mod hypercall;
pub mod insn;
pub mod memory;
pub mod mmio;
pub mod monitor;
pub mod pod;
pub mod policy;
#[cfg(feature = "gdb")]
pub mod postmortem;
pub mod report;
pub mod sandbox;
pub mod session;
pub mod signals;
pub mod stdio;
#[cfg(test)]
mod testing;

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use devices::block::Block;
use devices::net::{Net, Tap};
use devices::report::RateLimited;
use flexos_abi::MAX_COMPARTMENTS;
use kvm_bindings::KVM_API_VERSION;
use kvm_ioctls::Kvm;

use crate::arch::layout::MemoryPlan;
use crate::cli::Cli;
use crate::error::{Result, VmmError};
use crate::image::Image;
use crate::mmio::{Model, PlannedDevice};
use crate::monitor::RunPlan;
use crate::placement::Catalog;
use crate::policy::{DeviceKind, Policy, Tune};

/// The KVM device; `FLEXOS_KVM_DEVICE` overrides it (tests use it to check the error
/// path without taking /dev/kvm away from the machine).
fn open_kvm() -> Result<Kvm> {
    let path = std::env::var("FLEXOS_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".into());
    let c_path = std::ffi::CString::new(path.clone())
        .map_err(|_| VmmError::Usage("FLEXOS_KVM_DEVICE contains a NUL byte".into()))?;
    let unavailable = |what: String, errno: i32| VmmError::KvmUnavailable {
        what,
        source: std::io::Error::from_raw_os_error(errno),
    };
    let kvm = Kvm::new_with_path(&c_path)
        .map_err(|e| unavailable(format!("cannot open {path}"), e.errno()))?;
    // A node that opens but answers no KVM ioctl (say /dev/null) is not KVM, and a KVM
    // with another API version would not mean what our ioctls say.
    let version = kvm.get_api_version();
    if u32::try_from(version).ok() != Some(KVM_API_VERSION) {
        let source = if version < 0 {
            std::io::Error::last_os_error()
        } else {
            std::io::Error::other(format!("version {version}, want {KVM_API_VERSION}"))
        };
        return Err(VmmError::KvmUnavailable {
            what: format!("{path} is not a KVM device (KVM_GET_API_VERSION)"),
            source,
        });
    }
    if kvm.check_extension_int(kvm_ioctls::Cap::UserMemory) <= 0 {
        return Err(unavailable(
            format!("{path} is not a usable KVM device"),
            libc::ENOTTY,
        ));
    }
    Ok(kvm)
}

/// Where device `name` writes what a driver did wrong: `flexos-vmm: NAME: ...` on
/// stderr, at most one line a second (a driver may break its device in a loop); the
/// monitor flushes it when the run ends.
fn guest_fault_report(name: &'static str) -> RateLimited {
    RateLimited::new(
        move |text: &str| stderr_line!("flexos-vmm: {name}: {}", escape::line(text)),
        devices::report::DEFAULT_INTERVAL,
    )
}

/// The thread policy for `compartments` and `devices` (kind, owner; see [`policy`]),
/// logged at info: readable, and as one JSON object for the benchmark scripts.
fn thread_policy(
    placement: &placement::Placement,
    devices: Vec<(DeviceKind, u32)>,
    tune: Tune,
) -> Result<Policy> {
    let cpus = policy::allowed_cpus().map_err(VmmError::Affinity)?;
    let compartments = u32::try_from(placement.compartments.len())
        .expect("a placement has at most MAX_COMPARTMENTS compartments");
    // A compartment that hosts only drivers of devices this run did not attach has
    // nothing to do: its vCPU sleeps through the run.
    let attached = |kind: DeviceKind| devices.iter().any(|d| d.0 == kind);
    let idle = placement
        .compartments
        .iter()
        .map(|c| {
            c.components.iter().all(|name| {
                [DeviceKind::Block, DeviceKind::Net]
                    .iter()
                    .any(|&kind| name == kind.driver() && !attached(kind))
            })
        })
        .collect();
    let policy = Policy::choose(
        &policy::Run {
            compartments,
            idle,
            devices,
            cpus,
        },
        tune,
    );
    tracing::info!(target: "flexos_vmm::policy", json = %policy.json(), "{policy}");
    Ok(policy)
}

/// Opens `--disk`'s file, refusing the image being booted (before the open: the image
/// need not be whole sectors, and this says why).
fn open_disk(cli: &Cli, image: &Image) -> Result<Block> {
    let arg = cli.disk.as_ref().expect("opened only when given");
    let same =
        std::fs::metadata(&arg.path).is_ok_and(|m| image.file_id() == Some((m.dev(), m.ino())));
    if same {
        return Err(VmmError::Usage(format!(
            "--disk {}: that is the image being booted ({}); give a disk image",
            crate::escape::line(&arg.path.display().to_string()),
            crate::escape::line(&cli.image.display().to_string())
        )));
    }
    Ok(Block::open(&arg.path, arg.readonly)?)
}

/// Runs the monitor for a parsed command line; returns the process exit status.
pub fn run(cli: Cli, start: Instant) -> Result<i32> {
    if cli.compartments == 0 {
        return Err(VmmError::Usage(
            "--compartments 0: a run needs at least one compartment".into(),
        ));
    }
    if cli.compartments as usize > MAX_COMPARTMENTS {
        return Err(VmmError::Usage(format!(
            "--compartments {}: at most {MAX_COMPARTMENTS}",
            cli.compartments
        )));
    }
    let shared_size = memory::shared_size_from_mib(cli.shared_mem)?;
    // The host-memory check needs the compartment count, which a --config file decides;
    // the image limit only depends on --mem.
    let mem_size = memory::private_size_from_mib(cli.mem, 1)?;
    let image = Image::open(&cli.image, MemoryPlan::image_limit(mem_size))?;
    let catalog = Catalog::from_image(&image)?;
    if cli.list_components {
        stdio::stdout(&catalog.listing(&cli.image));
        return Ok(0);
    }
    let placement = match &cli.config {
        Some(path) => catalog.placement_from_config(path, &placement::read_config(path)?)?,
        None => catalog.default_split(cli.compartments)?,
    };
    let count = u32::try_from(placement.compartments.len())
        .expect("a placement has at most MAX_COMPARTMENTS compartments");
    memory::private_size_from_mib(cli.mem, count)?;
    let plan = MemoryPlan::new(mem_size, image.end, count)?;
    // The devices the command line asks for, in window order (one list drives their
    // windows, the policy, attachment, boot info and the end of the run).
    let wanted: Vec<DeviceKind> = [
        cli.disk.as_ref().map(|_| DeviceKind::Block),
        cli.net.as_ref().map(|_| DeviceKind::Net),
    ]
    .into_iter()
    .flatten()
    .collect();
    let owner = |kind: DeviceKind| {
        mmio::owner_of(
            kind.driver(),
            kind.option(),
            &catalog.components,
            &placement.assignment,
        )
    };
    if cli.print_policy {
        // The devices are not opened: only their owners matter to the policy.
        let devices = wanted
            .iter()
            .map(|&kind| Ok((kind, owner(kind)?)))
            .collect::<Result<Vec<_>>>()?;
        let policy = thread_policy(&placement, devices, cli.tune.unwrap_or_default())?;
        stdio::stdout(&format!("{policy}\n{}\n", policy.json()));
        return Ok(0);
    }
    let mut devices = Vec::with_capacity(wanted.len());
    for (index, &kind) in (0u32..).zip(&wanted) {
        // The backend first: a missing disk or tap is reported as such whatever the
        // image's components.
        let faults = guest_fault_report(kind.name());
        let model = match kind {
            DeviceKind::Block => {
                Model::Block(open_disk(&cli, &image)?.with_report(faults.report()))
            }
            DeviceKind::Net => {
                let arg = cli.net.as_ref().expect("wanted only when given");
                Model::Net(Net::new(Tap::open(&arg.tap)?, arg.mac).with_report(faults.report()))
            }
        };
        devices.push(PlannedDevice::new(index, kind, owner(kind)?, model, faults));
    }
    let policy = thread_policy(
        &placement,
        devices.iter().map(|d| (d.kind, d.window.owner)).collect(),
        cli.tune.unwrap_or_default(),
    )?;
    let devices = devices.into_iter().map(|d| d.apply(&policy)).collect();
    let kvm = open_kvm()?;
    monitor::run(
        &kvm,
        RunPlan {
            policy,
            image,
            placement,
            plan,
            shared_size,
            guest_args: cli.guest_args,
            timings: cli.timings,
            devices,
            debug: session::DebugPlan {
                gdb: cli.gdb,
                gdb_on_crash: cli.gdb_on_crash,
                gdb_wait: cli.gdb_wait.map(std::time::Duration::from_secs),
                core_dir: cli.core,
            },
        },
        start,
    )
}
