//! The run as a whole: one thread per compartment, and the first outcome (an exit, a
//! crash, a KVM failure) decides how the process ends. Ending the process tears every
//! other compartment down, so no peer is ever left waiting on a dead one.
//!
//! [`run`] goes through its phases in order: the debugger's listeners ([`session`]),
//! the machine ([`build`]: shared region, doorbells, compartments, devices), the vCPU
//! threads, the first outcome ([`wait_for_outcome`]), and the end ([`finish`]: devices
//! stopped, peers told, timings and the report).

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use devices::report::RateLimited;
use devices::virtio::StopFlag;
use kvm_ioctls::Kvm;

use crate::arch::layout::MemoryPlan;
use crate::compartment::{Compartment, CompartmentSpec, Doorbells, Milestones, Outcome};
use crate::error::{Result, VmmError, EXIT_CRASH};
use crate::image::Image;
use crate::memory::SharedRegion;
use crate::mmio::{self, DeviceHandle, Model, PlannedDevice, Window};
use crate::placement::Placement;
use crate::policy::{self, Policy};
use crate::sandbox;
use crate::session::{self, DebugPlan, Event, Session};
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
    /// `--gdb`, `--gdb-on-crash`, `--core`.
    pub debug: DebugPlan,
    /// The devices, in window order, each with its owner.
    pub devices: Vec<PlannedDevice>,
}

/// What the monitor thread waits for: a compartment's end, or the debugger's news.
enum Report {
    Ended(u32, Outcome),
    Debug(Event),
}

/// The machine of a run, built and not yet running.
struct Machine {
    shared: SharedRegion,
    compartments: Vec<Compartment>,
    names: Arc<Vec<String>>,
    milestones: Vec<Arc<Milestones>>,
    /// Every device's register file (the monitor stops them at the end) and the flags
    /// that cut short a queue served in a vCPU thread, without the lock that thread
    /// holds.
    devices: Vec<DeviceHandle>,
    ends: Vec<StopFlag>,
    faults: Vec<RateLimited>,
    net_stats: Option<Arc<devices::net::NetStats>>,
}

/// How the run's first outcome came about.
struct Ended {
    id: u32,
    outcome: Outcome,
    at: Instant,
    cores: Vec<PathBuf>,
}

fn micros(start: Instant, t: Option<&Instant>) -> String {
    t.map_or("-".to_string(), |t| {
        t.duration_since(start).as_micros().to_string()
    })
}

/// Boots every compartment and returns the process exit status.
pub fn run(kvm: &Kvm, mut run: RunPlan, start: Instant) -> Result<i32> {
    // Before any VM exists: a --gdb address that cannot be served is a usage error.
    let debug = session::prepare(&run.debug, &run.image)?;
    let mut machine = build(kvm, &mut run)?;
    let (tx, rx) = mpsc::channel();
    let events: session::Events = {
        let tx = std::sync::Mutex::new(tx.clone());
        Arc::new(move |e| {
            let _ = tx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .send(Report::Debug(e));
        })
    };
    let session = debug.start(&machine.compartments, &machine.names, &run.image, events)?;
    spawn_vcpus(
        std::mem::take(&mut machine.compartments),
        &run.policy,
        &session,
        &tx,
        run.debug.wanted(),
    )?;
    drop(tx);
    match wait_for_outcome(&rx, &session)? {
        Some(ended) => finish(&run, machine, ended, start),
        None => {
            crate::stderr_line!("flexos-vmm: the run was killed from gdb");
            Ok(EXIT_CRASH)
        }
    }
}

/// The shared region, the doorbells, every compartment with its devices attached.
fn build(kvm: &Kvm, run: &mut RunPlan) -> Result<Machine> {
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
    let windows: Arc<Vec<Window>> =
        Arc::new(run.devices.iter().map(|d| d.window.clone()).collect());
    let ends = run
        .devices
        .iter()
        .filter_map(PlannedDevice::end_flag)
        .collect();
    let faults = run.devices.iter().map(|d| d.faults.clone()).collect();
    let net_stats = run.devices.iter().find_map(PlannedDevice::net_stats);
    // The CPUs of this process's affinity mask (what `taskset` leaves), not the machine's.
    let host_cpus = u32::try_from(run.policy.cpus.len()).unwrap_or(u32::MAX);
    if run.policy.idle_spinner {
        policy::start_idle_spinners(&run.policy.cpus).map_err(VmmError::VcpuThread)?;
    }
    let mut planned = std::mem::take(&mut run.devices);
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
            host_cpus,
            spin_rounds: run.policy.spin_rounds(id),
        };
        let mut comp = Compartment::create(kvm, spec, &run.image, &run.plan, &shared, &doorbells)?;
        let (own, rest): (Vec<_>, Vec<_>) = planned.into_iter().partition(|d| d.window.owner == id);
        planned = rest;
        for device in own {
            let (window, kicks, name) = (device.window.clone(), device.kicks(), device.kind.name());
            devices.push(match device.model {
                Model::Block(b) => comp.attach(&window, b, "virtio-blk device", kicks)?,
                Model::Net(n) => comp.attach(&window, n, "virtio-net device", kicks)?,
            });
            tracing::debug!(
                compartment = id,
                window = format_args!("{:#x}..{:#x}", window.range.start, window.range.end),
                ?kicks,
                "{name} attached"
            );
        }
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
        compartments.push(comp);
    }
    let milestones = compartments.iter().map(|c| c.milestones.clone()).collect();
    Ok(Machine {
        shared,
        compartments,
        names,
        milestones,
        devices,
        ends,
        faults,
        net_stats,
    })
}

/// One thread per compartment, pinned where the policy says, reporting its outcome.
/// Each runs its guest once this thread has its own seccomp filter (see `sandbox`).
fn spawn_vcpus(
    compartments: Vec<Compartment>,
    policy: &Policy,
    session: &Session,
    tx: &mpsc::Sender<Report>,
    debug: bool,
) -> Result<()> {
    let go = Arc::new(std::sync::Barrier::new(compartments.len() + 1));
    for mut comp in compartments {
        let tx = tx.clone();
        let id = comp.spec.id;
        let hook = session.hook();
        let cpu = policy.cpu_of(&format!("vcpu-{id}"));
        let used = sandbox::VcpuUse::of(id, &policy.devices);
        let go = go.clone();
        std::thread::Builder::new()
            .name(format!("vcpu-{}", comp.spec.name))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    // A performance choice: if the CPU was taken away meanwhile, the
                    // thread runs where the scheduler puts it.
                    let _ = policy::pin_current_thread(cpu);
                }
                sandbox::enter_thread(sandbox::Thread::Vcpu(used));
                go.wait();
                let outcome = comp.run(hook.as_deref().map(|h| h as _));
                let _ = tx.send(Report::Ended(id, outcome));
            })
            .map_err(VmmError::VcpuThread)?;
    }
    sandbox::enter(sandbox::Thread::Main { debug })?;
    go.wait();
    Ok(())
}

/// The first compartment to end decides; `None` when GDB killed the run first.
fn wait_for_outcome(rx: &mpsc::Receiver<Report>, session: &Session) -> Result<Option<Ended>> {
    let mut cores = Vec::new();
    loop {
        match rx.recv() {
            Ok(Report::Debug(Event::Killed)) => return Ok(None),
            Ok(Report::Debug(Event::Over)) => {}
            Ok(Report::Debug(Event::Cores(paths))) => cores = paths,
            Ok(Report::Ended(id, outcome)) => {
                let at = Instant::now();
                // The stub is telling a connected GDB how the run ended: let it finish.
                if session.in_session() {
                    while let Ok(report) = rx.recv() {
                        match report {
                            Report::Debug(Event::Cores(paths)) => cores = paths,
                            Report::Debug(_) => break,
                            Report::Ended(..) => {}
                        }
                    }
                }
                return Ok(Some(Ended {
                    id,
                    outcome,
                    at,
                    cores,
                }));
            }
            Err(_) => return Err(VmmError::NoOutcome),
        }
    }
}

/// Stops the devices, tells the peers, prints timings and the report; the exit status.
fn finish(run: &RunPlan, machine: Machine, ended: Ended, start: Instant) -> Result<i32> {
    let Ended {
        id,
        outcome,
        at,
        cores,
    } = ended;
    // First without the locks: a device run in a vCPU thread holds its lock while it
    // works through a queue.
    for flag in &machine.ends {
        flag.set();
    }
    for device in &machine.devices {
        mmio::lock(device).stop();
    }
    // After the stop: no device reports any more, so the counts are final.
    for f in &machine.faults {
        f.flush();
    }
    if let Some(stats) = &machine.net_stats {
        tracing::debug!(counters = %stats.summary(), "virtio-net");
    }
    tracing::debug!(compartment = id, ?outcome, "first outcome ends the run");
    if !matches!(outcome, Outcome::Exited(_)) {
        // The report reads the rest of the image file: do that while peers still wait,
        // so that they get no more time to run (and print) than before.
        run.image.file_bytes();
        // Peers blocked in a gate call to it return PeerDead instead of waiting; the
        // process then ends, which stops every vCPU.
        machine.shared.mark_dead(id);
    }
    if run.timings {
        for (id, m) in machine.milestones.iter().enumerate() {
            let phases: Vec<String> = m
                .phases()
                .iter()
                .map(|(name, at)| format!("{name}={}", micros(start, *at)))
                .collect();
            crate::stderr_line!("timings: compartment={id} {}", phases.join(" "));
        }
        crate::stderr_line!("timings: exit_us={}", micros(start, Some(&at)));
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
