//! The run as a whole: one thread per compartment, and the first outcome (an exit, a
//! crash, a KVM failure) decides how the process ends. Ending the process tears every
//! other compartment down, so no peer is ever left waiting on a dead one.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use kvm_ioctls::Kvm;

use crate::arch::layout::MemoryPlan;
use gdbstub::stub::DisconnectReason;

use crate::compartment::{Compartment, CompartmentSpec, Doorbells, Milestones, Outcome};
use crate::debug::stub::{self, GdbTarget};
use crate::debug::Debugger;
use crate::error::{Result, VmmError, EXIT_CRASH};
use crate::image::Image;
use crate::memory::SharedRegion;
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
            eprintln!("flexos-vmm: {e}; running on without the debugger");
            dbg.detach();
            Ok(false)
        }
    }
}

/// Boots every compartment and returns the process exit status.
pub fn run(kvm: &Kvm, run: RunPlan, start: Instant) -> Result<i32> {
    let count = run.placement.compartments.len() as u32;
    let shared = SharedRegion::new(run.shared_size)?;
    let layout = shared.init(count)?;
    let doorbells = Doorbells::new(count)?;
    let names: Arc<Vec<String>> = Arc::new(
        run.placement
            .compartments
            .iter()
            .map(|c| c.name.clone())
            .collect(),
    );

    let mut compartments = Vec::with_capacity(count as usize);
    for (id, plan) in run.placement.compartments.iter().enumerate() {
        let spec = CompartmentSpec {
            id: id as u32,
            name: plan.name.clone(),
            components: plan.components.clone(),
            assignment: run.placement.assignment.clone(),
            all_names: names.clone(),
            guest_args: run.guest_args.clone(),
            timings: run.timings,
        };
        compartments.push(Compartment::create(
            kvm, spec, &run.image, &run.plan, &shared, &doorbells,
        )?);
        tracing::debug!(
            compartment = id,
            name = %plan.name,
            components = ?plan.components,
            data_window = ?run.plan.data_window(id as u32),
            "compartment created"
        );
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
            .map_err(VmmError::KvmRun)?,
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
            .map_err(|e| VmmError::KvmRun(format!("cannot start a vCPU thread: {e}")))?;
    }
    drop(tx);
    if let (Some(addr), Some(dbg)) = (&run.gdb, &debugger) {
        if serve_gdb(addr, dbg.clone())? {
            eprintln!("flexos-vmm: the run was killed from gdb");
            return Ok(EXIT_CRASH);
        }
    }
    let (id, outcome) = rx
        .recv()
        .map_err(|_| VmmError::KvmRun("every vCPU thread ended without an outcome".into()))?;
    let end = Instant::now();
    tracing::debug!(compartment = id, ?outcome, "first outcome ends the run");
    if !matches!(outcome, Outcome::Exited(_)) {
        // Peers blocked in a gate call to it return PeerDead instead of waiting; the
        // process then ends, which stops every vCPU.
        shared.mark_dead(&layout, id);
    }

    if run.timings {
        for (id, m) in milestones.iter().enumerate() {
            eprintln!(
                "timings: compartment={id} vm_created_us={} guest_main_us={}",
                micros(start, m.vm_created.get()),
                micros(start, m.guest_main.get())
            );
        }
        eprintln!("timings: exit_us={}", micros(start, Some(&end)));
    }
    match outcome {
        Outcome::Exited(code) => Ok(code as i32),
        Outcome::Crashed(report) => {
            let sym = Symbolizer::new(&run.image.bytes);
            eprint!("{}", report.render(&sym));
            Ok(EXIT_CRASH)
        }
        Outcome::Failed(e) => Err(e),
    }
}
