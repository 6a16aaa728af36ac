//! The run as a whole: one thread per compartment, and the first outcome (an exit, a
//! crash, a KVM failure) decides how the process ends. Ending the process tears every
//! other compartment down, so no peer is ever left waiting on a dead one.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use devices::block::Block;
use kvm_ioctls::Kvm;

use crate::arch::layout::MemoryPlan;
use gdbstub::stub::DisconnectReason;

use crate::compartment::{Compartment, CompartmentSpec, Doorbells, Milestones, Outcome};
use crate::debug::stub::{self, GdbTarget};
use crate::debug::Debugger;
use crate::error::{Result, VmmError, EXIT_CRASH};
use crate::image::Image;
use crate::memory::SharedRegion;
use crate::mmio::{self, Window};
use crate::placement::Placement;
use crate::symbols::Symbolizer;

/// Everything a run needs, decided before any VM exists.
pub struct RunPlan {
    pub image: Image,
    pub placement: Placement,
    pub plan: MemoryPlan,
    pub shared_size: u64,
    pub guest_args: Vec<String>,
    pub timings: bool,
    /// Where to serve GDB, if at all.
    pub gdb: Option<String>,
    /// The `--disk` device and the window of the compartment that owns it.
    pub disk: Option<DiskPlan>,
}

/// A virtio-blk device and where it goes.
pub struct DiskPlan {
    pub window: Window,
    pub block: Block,
}

fn micros(start: Instant, t: Option<&Instant>) -> String {
    t.map_or("-".to_string(), |t| {
        t.duration_since(start).as_micros().to_string()
    })
}

/// Serves GDB until it detaches or kills the run, or the guest ends; true on kill.
fn serve_gdb(addr: &str, dbg: Arc<Debugger>) -> Result<bool> {
    let conn = stub::listen(addr).map_err(VmmError::Usage)?;
    let mut target = GdbTarget::new(dbg.clone());
    match target.serve(conn) {
        Ok(DisconnectReason::Kill) => Ok(true),
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => Ok(false),
        Ok(DisconnectReason::Disconnect) => {
            dbg.detach();
            Ok(false)
        }
        Err(e) => {
            crate::stderr_line!("flexos-vmm: {e}; running on without the debugger");
            dbg.detach();
            Ok(false)
        }
    }
}

/// Boots every compartment and returns the process exit status.
pub fn run(kvm: &Kvm, mut run: RunPlan, start: Instant) -> Result<i32> {
    let count = u32::try_from(run.placement.compartments.len())
        .expect("a placement has at most MAX_COMPARTMENTS compartments");
    let shared = SharedRegion::new(run.shared_size, count)?;
    let doorbells = Doorbells::new(count)?;
    let names: Arc<Vec<String>> = Arc::new(
        run.placement
            .compartments
            .iter()
            .map(|c| c.name.clone())
            .collect(),
    );

    let windows: Arc<Vec<Window>> = Arc::new(run.disk.iter().map(|d| d.window.clone()).collect());
    // Stopped when the run ends, so a device thread never outlives its run's answer
    // (in-flight requests finish, the disk file is closed before the process exits).
    let mut devices = Vec::new();
    let mut compartments = Vec::with_capacity(count as usize);
    for (id, plan) in (0u32..).zip(&run.placement.compartments) {
        let spec = CompartmentSpec {
            id,
            name: plan.name.clone(),
            components: plan.components.clone(),
            assignment: run.placement.assignment.clone(),
            all_names: names.clone(),
            guest_args: run.guest_args.clone(),
            timings: run.timings,
            windows: windows.clone(),
        };
        let mut comp = Compartment::create(kvm, spec, &run.image, &run.plan, &shared, &doorbells)?;
        if let Some(disk) = run.disk.take_if(|d| d.window.owner == id) {
            devices.push(comp.attach(&disk.window, disk.block, "virtio-blk device")?);
            tracing::debug!(
                compartment = id,
                window = format_args!(
                    "{:#x}..{:#x}",
                    disk.window.range.start, disk.window.range.end
                ),
                "virtio-blk attached"
            );
        }
        compartments.push(comp);
        tracing::debug!(
            compartment = id,
            name = %plan.name,
            components = ?plan.components,
            data_window = ?run.plan.data_window(id),
            "compartment created"
        );
        for (range, access, what) in shared.channel_map(id, &names) {
            tracing::debug!(
                compartment = id,
                gpa = format_args!("{:#x}..{:#x}", range.start, range.end),
                access,
                what = %what,
                "shared part"
            );
        }
    }
    let milestones: Vec<Arc<Milestones>> =
        compartments.iter().map(|c| c.milestones.clone()).collect();
    let debugger = match &run.gdb {
        Some(_) => Some(Arc::new(
            Debugger::new(
                names.to_vec(),
                compartments.iter().map(|c| c.memory()).collect(),
                compartments.iter().map(|c| c.cr3).collect(),
            )
            .map_err(VmmError::Debugger)?,
        )),
        None => None,
    };

    let (tx, rx) = mpsc::channel();
    for mut comp in compartments {
        let tx = tx.clone();
        let id = comp.spec.id;
        let debugger = debugger.clone();
        std::thread::Builder::new()
            .name(format!("vcpu-{}", comp.spec.name))
            .spawn(move || {
                let outcome = comp.run(debugger.as_deref());
                let _ = tx.send((id, outcome));
            })
            .map_err(VmmError::VcpuThread)?;
    }
    drop(tx);
    if let (Some(addr), Some(dbg)) = (&run.gdb, &debugger) {
        if serve_gdb(addr, dbg.clone())? {
            crate::stderr_line!("flexos-vmm: the run was killed from gdb");
            return Ok(EXIT_CRASH);
        }
    }
    let (id, outcome) = rx.recv().map_err(|_| VmmError::NoOutcome)?;
    let end = Instant::now();
    for device in &devices {
        mmio::lock(device).stop();
    }
    tracing::debug!(compartment = id, ?outcome, "first outcome ends the run");
    if !matches!(outcome, Outcome::Exited(_)) {
        // Peers blocked in a gate call to it return PeerDead instead of waiting; the
        // process then ends, which stops every vCPU.
        shared.mark_dead(id);
    }

    if run.timings {
        for (id, m) in milestones.iter().enumerate() {
            crate::stderr_line!(
                "timings: compartment={id} vm_created_us={} guest_main_us={}",
                micros(start, m.vm_created.get()),
                micros(start, m.guest_main.get())
            );
        }
        crate::stderr_line!("timings: exit_us={}", micros(start, Some(&end)));
    }
    match outcome {
        Outcome::Exited(code) => Ok(code as i32),
        Outcome::Crashed(report) => {
            let sym = Symbolizer::new(&run.image.path, &run.image.bytes);
            crate::stdio::stderr(&report.render(&sym));
            Ok(EXIT_CRASH)
        }
        Outcome::Failed(e) => Err(e),
    }
}
