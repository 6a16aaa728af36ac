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
pub mod core_dir;
pub mod coredump;
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
pub mod postmortem;
pub mod report;
pub mod signals;
pub mod stdio;
#[cfg(test)]
mod testing;

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use devices::block::{Block, Execution};
use devices::net::{Net, Tap};
use devices::report::RateLimited;
use flexos_abi::{DEVICE_BLOCK, DEVICE_NET, MAX_COMPARTMENTS};
use kvm_bindings::KVM_API_VERSION;
use kvm_ioctls::Kvm;

use crate::arch::layout::MemoryPlan;
use crate::cli::Cli;
use crate::error::{Result, VmmError};
use crate::image::Image;
use crate::mmio::Window;
use crate::monitor::{DiskPlan, NetPlan, RunPlan};
use crate::placement::Catalog;
use crate::policy::{DeviceKind, DeviceRun, Policy, Tune};

/// The component that drives a `--disk`: the disk belongs to its compartment.
pub const BLOCK_DRIVER: &str = "blkdev";
/// The component that drives a `--net`: the network device belongs to its compartment.
pub const NET_DRIVER: &str = "netdev";

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
                (name == BLOCK_DRIVER && !attached(DeviceKind::Block))
                    || (name == NET_DRIVER && !attached(DeviceKind::Net))
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
    if cli.print_policy {
        let mut devices = Vec::new();
        if cli.disk.is_some() {
            let owner = mmio::owner_of(
                BLOCK_DRIVER,
                "--disk",
                &catalog.components,
                &placement.assignment,
            )?;
            devices.push((DeviceKind::Block, owner));
        }
        if cli.net.is_some() {
            let owner = mmio::owner_of(
                NET_DRIVER,
                "--net",
                &catalog.components,
                &placement.assignment,
            )?;
            devices.push((DeviceKind::Net, owner));
        }
        let policy = thread_policy(&placement, devices, cli.tune.unwrap_or_default())?;
        stdio::stdout(&format!("{policy}\n{}\n", policy.json()));
        return Ok(0);
    }
    // The file first: a missing disk is reported as such whatever the image.
    let disk = match &cli.disk {
        Some(arg) => {
            // Before opening: the image need not be whole sectors, and this says why.
            let same = std::fs::metadata(&arg.path)
                .is_ok_and(|m| image.file_id() == Some((m.dev(), m.ino())));
            if same {
                return Err(VmmError::Usage(format!(
                    "--disk {}: that is the image being booted ({}); give a disk image",
                    crate::escape::line(&arg.path.display().to_string()),
                    crate::escape::line(&cli.image.display().to_string())
                )));
            }
            let faults = guest_fault_report("virtio-blk");
            let block = Block::open(&arg.path, arg.readonly)?.with_report(faults.report());
            let owner = mmio::owner_of(
                BLOCK_DRIVER,
                "--disk",
                &catalog.components,
                &placement.assignment,
            )?;
            Some(DiskPlan {
                window: Window::new(0, DEVICE_BLOCK, owner),
                block,
                faults,
            })
        }
        None => None,
    };
    // The tap first, like the disk file: a missing tap is reported as such whatever
    // the image. Its window follows the disk's.
    let net = match &cli.net {
        Some(arg) => {
            let tap = Tap::open(&arg.tap)?;
            let owner = mmio::owner_of(
                NET_DRIVER,
                "--net",
                &catalog.components,
                &placement.assignment,
            )?;
            let faults = guest_fault_report("virtio-net");
            Some(NetPlan {
                window: Window::new(u32::from(disk.is_some()), DEVICE_NET, owner),
                net: Net::new(tap, arg.mac).with_report(faults.report()),
                faults,
            })
        }
        None => None,
    };
    let devices = disk
        .iter()
        .map(|d| (DeviceKind::Block, d.window.owner))
        .chain(net.iter().map(|n| (DeviceKind::Net, n.window.owner)))
        .collect();
    let policy = thread_policy(&placement, devices, cli.tune.unwrap_or_default())?;
    let disk = disk.map(|mut d| {
        let how = policy.device_run(DeviceKind::Block);
        let execution = match how {
            DeviceRun::OwnThread => Execution::OwnThread,
            DeviceRun::OwnerVcpu => Execution::Inline,
        };
        d.block = d
            .block
            .with_execution(execution)
            // A device thread without a CPU of its own: see devices::virtio::queue.
            .with_adaptive_poll(policy.crowded)
            .with_cpu(policy.cpu_of(&format!("virtio-blk-{}", d.window.owner)));
        d
    });
    let net = net.map(|mut n| {
        n.net = n
            .net
            .with_cpu(policy.cpu_of(&format!("virtio-net-{}", n.window.owner)));
        n
    });
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
            gdb: cli.gdb,
            disk,
            net,
            post_mortem: postmortem::PostMortemPlan {
                core_dir: cli.core,
                gdb: cli.gdb_on_crash,
                gdb_wait: cli.gdb_wait.map(std::time::Duration::from_secs),
            },
        },
        start,
    )
}
