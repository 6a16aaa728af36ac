//! The run as a whole: one thread per compartment, and the first outcome (an exit, a
//! crash, a KVM failure) decides how the process ends. Ending the process tears every
//! other compartment down, so no peer is ever left waiting on a dead one.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use devices::block::Block;
use devices::block::Execution;
use devices::net::{Net, Tap};
use devices::report::RateLimited;
use devices::virtio::StopFlag;
use kvm_ioctls::Kvm;

use crate::arch::layout::MemoryPlan;
use crate::compartment::{
    Compartment, CompartmentSpec, Doorbells, Kicks, Milestones, Outcome, StopHook,
};
use crate::debug::listen::GdbListener;
use crate::debug::stub::{self, SessionEnd};
use crate::debug::Debugger;
use crate::error::{Result, VmmError, EXIT_CRASH};
use crate::image::Image;
use crate::memory::SharedRegion;
use crate::mmio::{self, Window};
use crate::placement::Placement;
use crate::policy::{self, Policy};
use crate::postmortem::{self, PostMortemEvent, PostMortemPlan};
use crate::symbols::Symbolizer;

/// Everything a run needs, decided before any VM exists.
pub struct RunPlan {
    /// How the run's threads wait, wake and where they run.
    pub policy: Policy,
    pub image: Image,
    pub placement: Placement,
    pub plan: MemoryPlan,
    pub shared_size: u64,
    pub guest_args: Vec<String>,
    pub timings: bool,
    /// Where to serve GDB, if at all.
    pub gdb: Option<String>,
    /// What to do on a crash (`--core`, `--gdb-on-crash`).
    pub post_mortem: PostMortemPlan,
    /// The `--disk` device and the window of the compartment that owns it.
    pub disk: Option<DiskPlan>,
    /// The `--net` device and the window of the compartment that owns it.
    pub net: Option<NetPlan>,
}

/// A virtio-blk device and where it goes.
pub struct DiskPlan {
    pub window: Window,
    pub block: Block,
    /// The device's rate-limited reports of driver bugs, flushed when the run ends.
    pub faults: RateLimited,
}

/// A virtio-net device and where it goes.
pub struct NetPlan {
    pub window: Window,
    pub net: Net<Tap>,
    /// As [`DiskPlan::faults`].
    pub faults: RateLimited,
}

fn micros(start: Instant, t: Option<&Instant>) -> String {
    t.map_or("-".to_string(), |t| {
        t.duration_since(start).as_micros().to_string()
    })
}

/// What the monitor thread waits for: a compartment's end, or the GDB session's.
enum Report {
    Ended(u32, Outcome),
    Gdb(SessionEnd),
    PostMortem(PostMortemEvent),
}

/// Boots every compartment and returns the process exit status.
pub fn run(kvm: &Kvm, mut run: RunPlan, start: Instant) -> Result<i32> {
    // Before any VM exists: a --gdb address that cannot be served is a usage error. A
    // debugging session can outlast the image file: read all of it before waiting.
    let listener = match run.gdb.as_deref() {
        Some(addr) => {
            run.image.file_bytes();
            Some(GdbListener::bind(addr)?)
        }
        None => None,
    };
    let crash_listener = match run.post_mortem.gdb.as_deref() {
        Some(addr) => {
            run.image.file_bytes();
            Some(GdbListener::bind(addr)?)
        }
        None => None,
    };
    // Whichever way the run ends, the socket file it created goes with it.
    let _socket_file = listener.as_ref().and_then(GdbListener::socket_file);
    let _crash_socket_file = crash_listener.as_ref().and_then(GdbListener::socket_file);
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

    let windows: Arc<Vec<Window>> = Arc::new(
        run.disk
            .iter()
            .map(|d| d.window.clone())
            .chain(run.net.iter().map(|n| n.window.clone()))
            .collect(),
    );
    let net_stats = run.net.as_ref().map(|n| n.net.stats().clone());
    let ends: Vec<StopFlag> = run.disk.iter().map(|d| d.block.end_flag()).collect();
    let faults: Vec<RateLimited> = run
        .disk
        .iter()
        .map(|d| d.faults.clone())
        .chain(run.net.iter().map(|n| n.faults.clone()))
        .collect();
    // Stopped when the run ends, so a device thread never outlives its run's answer
    // (in-flight requests finish, the disk file is closed before the process exits).
    let mut devices = Vec::new();
    let mut compartments = Vec::with_capacity(count as usize);
    // The CPUs of this process's affinity mask (what `taskset` leaves), not the machine's.
    let host_cpus = u32::try_from(run.policy.cpus.len()).unwrap_or(u32::MAX);
    if run.policy.idle_spinner {
        policy::start_idle_spinners(&run.policy.cpus).map_err(VmmError::VcpuThread)?;
    }
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
            host_cpus,
            spin_rounds: run.policy.spin_rounds(id),
        };
        let mut comp = Compartment::create(kvm, spec, &run.image, &run.plan, &shared, &doorbells)?;
        if let Some(disk) = run.disk.take_if(|d| d.window.owner == id) {
            // A block device run in its owner's vCPU thread is answered when the
            // kick exits to the monitor: no ioeventfd for it.
            let kicks = match disk.block.execution() {
                Execution::OwnThread => Kicks::InKernel,
                Execution::Inline => Kicks::Exit,
            };
            devices.push(comp.attach(&disk.window, disk.block, "virtio-blk device", kicks)?);
            tracing::debug!(
                compartment = id,
                window = format_args!(
                    "{:#x}..{:#x}",
                    disk.window.range.start, disk.window.range.end
                ),
                "virtio-blk attached"
            );
        }
        if let Some(net) = run.net.take_if(|n| n.window.owner == id) {
            devices.push(comp.attach(
                &net.window,
                net.net,
                "virtio-net device",
                Kicks::InKernel,
            )?);
            tracing::debug!(
                compartment = id,
                window = format_args!("{:#x}..{:#x}", net.window.range.start, net.window.range.end),
                "virtio-net attached"
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
    let debugger = if listener.is_some() || run.post_mortem.wanted() {
        let new = if listener.is_some() {
            Debugger::new
        } else {
            Debugger::on_crash
        };
        Some(Arc::new(new(
            names.to_vec(),
            compartments.iter().map(|c| c.memory()).collect(),
            compartments.iter().map(|c| c.cr3).collect(),
            run.image.code(),
        )?))
    } else {
        None
    };

    let (tx, rx) = mpsc::channel();
    for mut comp in compartments {
        let tx = tx.clone();
        let id = comp.spec.id;
        let debugger = debugger.clone();
        let cpu = run.policy.cpu_of(&format!("vcpu-{id}"));
        std::thread::Builder::new()
            .name(format!("vcpu-{}", comp.spec.name))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    // A performance choice: if the CPU was taken away meanwhile, the
                    // thread runs where the scheduler puts it.
                    let _ = policy::pin_current_thread(cpu);
                }
                let outcome = comp.run(debugger.as_deref().map(|d| d as &dyn StopHook));
                let _ = tx.send(Report::Ended(id, outcome));
            })
            .map_err(VmmError::VcpuThread)?;
    }
    if let (Some(listener), Some(dbg)) = (listener, &debugger) {
        let tx = tx.clone();
        stub::serve_in_background(listener, dbg.clone(), move |end| {
            let _ = tx.send(Report::Gdb(end));
        })
        .map_err(VmmError::GdbThread)?;
    }
    if let (true, Some(dbg)) = (run.post_mortem.wanted(), &debugger) {
        let tx = tx.clone();
        let watcher = postmortem::Watcher {
            core_dir: run.post_mortem.core_dir.clone(),
            gdb: crash_listener,
            gdb_wait: run.post_mortem.gdb_wait,
            image: run.image.path.clone(),
        };
        postmortem::watch_in_background(watcher, dbg.clone(), move |e| {
            let _ = tx.send(Report::PostMortem(e));
        })
        .map_err(VmmError::GdbThread)?;
    }
    drop(tx);
    let mut cores = Vec::new();
    // The first compartment to end decides; the GDB session may end the run first.
    let (id, outcome) = loop {
        match rx.recv() {
            Ok(Report::Gdb(SessionEnd::Killed)) => {
                crate::stderr_line!("flexos-vmm: the run was killed from gdb");
                return Ok(EXIT_CRASH);
            }
            Ok(Report::Gdb(SessionEnd::Over))
            | Ok(Report::PostMortem(PostMortemEvent::Gdb(SessionEnd::Over))) => {}
            Ok(Report::PostMortem(PostMortemEvent::Gdb(SessionEnd::Killed))) => {
                crate::stderr_line!("flexos-vmm: the run was killed from gdb");
                return Ok(EXIT_CRASH);
            }
            Ok(Report::PostMortem(PostMortemEvent::Cores(paths))) => cores = paths,
            Ok(Report::Ended(id, outcome)) => {
                // The stub is telling a connected GDB how the run ended: let it finish.
                if debugger.as_ref().is_some_and(|d| d.in_session()) {
                    while !matches!(
                        rx.recv(),
                        Ok(Report::Gdb(_) | Report::PostMortem(PostMortemEvent::Gdb(_))) | Err(_)
                    ) {}
                }
                break (id, outcome);
            }
            Err(_) => return Err(VmmError::NoOutcome),
        }
    };
    let end = Instant::now();
    // First without the locks: a device run in a vCPU thread holds its lock while it
    // works through a queue.
    for flag in &ends {
        flag.set();
    }
    for device in &devices {
        mmio::lock(device).stop();
    }
    // After the stop: no device reports any more, so the counts are final.
    for f in &faults {
        f.flush();
    }
    if let Some(stats) = &net_stats {
        tracing::debug!(counters = %stats.summary(), "virtio-net");
    }
    tracing::debug!(compartment = id, ?outcome, "first outcome ends the run");
    if !matches!(outcome, Outcome::Exited(_)) {
        // The report reads the rest of the image file: do that while peers still wait,
        // so that they get no more time to run (and print) than before.
        run.image.file_bytes();
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
            let sym = Symbolizer::new(run.image.file_bytes());
            let mut text = report.render(&sym);
            if !cores.is_empty() {
                let files: Vec<String> = cores
                    .iter()
                    .map(|p| crate::escape::line(&p.display().to_string()))
                    .collect();
                text.push_str(&format!("  core files: {}\n", files.join(", ")));
            }
            crate::stdio::stderr(&text);
            Ok(EXIT_CRASH)
        }
        Outcome::Failed(e) => Err(e),
    }
}
