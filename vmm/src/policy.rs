//! The thread policy: how each thread of a run waits, is woken and where it runs,
//! chosen from the threads the monitor starts and the CPUs it may use.
//!
//! A run has one vCPU thread per compartment and, per device, either a thread of its
//! own or none. On this machine (2 cores, kvm-pvm) every choice below was measured
//! (figures in docs/benchmarks.md, `scripts/bench-handoff`): spinning is nearly free
//! when every thread has a CPU and ruinous when one does not, because a spinning waiter
//! holds the CPU the thread it waits for needs; and every hand-off that sleeps costs an
//! exit to the monitor and a wake-up (~50 us a direction on the AMD host). So:
//!
//! - **Threads, not compartments, are counted** against the CPUs of the process's
//!   affinity mask (what `taskset` leaves, not the machine's count).
//! - **A block device runs in its owner's vCPU thread when there is no CPU for its
//!   own** ([`DeviceRun::OwnerVcpu`]): a kick is then an exit to the monitor, which
//!   answers the queue before the vCPU runs on, instead of a wake-up of a device thread
//!   that must first win a CPU from the very vCPU waiting for it. With a spare CPU the
//!   device keeps its thread, which polls and answers without any exit.
//! - **Spin budget**: long ([`rpc_shm::DEDICATED_SPIN_ROUNDS`]) when every thread has a
//!   CPU, the default otherwise; the guest learns it through the boot info.
//! - **Waiting and waking**: a guest that stops spinning sleeps with the sleep
//!   hypercall (an exit; its vCPU thread blocks on the compartment's doorbell eventfd)
//!   and is woken by a peer's doorbell, an ioeventfd. KVM's in-kernel irqchip and
//!   irqfds were measured and cannot wake this guest (REFERENCE.md), so this is the
//!   only way here.
//! - **Placement** and **idle spinners** (a SCHED_IDLE thread per CPU, which keeps a
//!   CPU from being halted by the outer hypervisor so that a wake-up there is cheaper)
//!   are off unless asked for with `--tune`: measured, neither paid on its own.
//!
//! `--tune KEY=VALUE,...` overrides any choice, for experiments and benchmarks; the
//! policy in force is logged at `RUST_LOG=info` and, as JSON, at
//! `RUST_LOG=flexos_vmm::policy=info` for the benchmark scripts.

use std::fmt;
use std::io;

use rpc_shm::{DEDICATED_SPIN_ROUNDS, DEFAULT_SPIN_ROUNDS};

/// A device of the run, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk: answers requests only when kicked, so it can run in the kicker.
    Block,
    /// virtio-net: frames arrive from the tap whenever the peer sends, so it needs a
    /// thread that waits on the tap.
    Net,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Block => "virtio-blk",
            DeviceKind::Net => "virtio-net",
        }
    }
}

/// Where a device's queues are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRun {
    /// Its own thread, woken by an ioeventfd kick.
    OwnThread,
    /// The vCPU thread of the compartment that owns it: a kick exits to the monitor,
    /// which answers every available request before the vCPU resumes.
    OwnerVcpu,
}

/// An on/off choice that may be left to the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Choice<T> {
    #[default]
    Auto,
    Set(T),
}

/// `--tune`: what the command line fixes instead of the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tune {
    /// Guest spin rounds before sleeping.
    pub spin: Choice<u32>,
    /// Where the block device runs.
    pub blk: Choice<DeviceRun>,
    /// Pin each thread to one CPU.
    pub pin: Choice<bool>,
    /// A SCHED_IDLE spinner on each CPU.
    pub idle_spinner: Choice<bool>,
}

impl Tune {
    /// Parses `spin=N|auto,blk=thread|vcpu|auto,pin=on|off|auto,idle-spinner=on|off|auto`.
    pub fn parse(text: &str) -> Result<Tune, String> {
        let mut tune = Tune::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}': want KEY=VALUE"))?;
            let bad = || format!("'{item}': {}", Tune::expects(key));
            match key {
                "spin" => {
                    tune.spin = match value {
                        "auto" => Choice::Auto,
                        n => Choice::Set(n.parse().map_err(|_| bad())?),
                    }
                }
                "blk" => {
                    tune.blk = match value {
                        "auto" => Choice::Auto,
                        "thread" => Choice::Set(DeviceRun::OwnThread),
                        "vcpu" => Choice::Set(DeviceRun::OwnerVcpu),
                        _ => return Err(bad()),
                    }
                }
                "pin" => tune.pin = on_off(value).ok_or_else(bad)?,
                "idle-spinner" => tune.idle_spinner = on_off(value).ok_or_else(bad)?,
                _ => {
                    return Err(format!(
                        "unknown key '{key}' (keys: spin, blk, pin, idle-spinner)"
                    ))
                }
            }
        }
        Ok(tune)
    }

    fn expects(key: &str) -> &'static str {
        match key {
            "spin" => "want a number of rounds or auto",
            "blk" => "want thread, vcpu or auto",
            _ => "want on, off or auto",
        }
    }
}

fn on_off(value: &str) -> Option<Choice<bool>> {
    match value {
        "auto" => Some(Choice::Auto),
        "on" => Some(Choice::Set(true)),
        "off" => Some(Choice::Set(false)),
        _ => None,
    }
}

/// What the policy is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub compartments: u32,
    /// Each device and the compartment that owns it.
    pub devices: Vec<(DeviceKind, u32)>,
    /// The CPUs the monitor may use (its affinity mask), in order.
    pub cpus: Vec<usize>,
}

/// One thread the monitor starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Its name (`vcpu-<id>` here; the monitor names vCPU threads after compartments).
    pub name: String,
    /// The CPU it is pinned to, if any.
    pub cpu: Option<usize>,
}

/// The policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub cpus: Vec<usize>,
    /// Threads that run guest code or device work (vCPUs, device threads).
    pub threads: Vec<ThreadPlan>,
    /// More such threads than CPUs.
    pub crowded: bool,
    /// Guest spin rounds before sleeping, for every compartment.
    pub spin_rounds: u32,
    /// Where each device runs, in the order given.
    pub devices: Vec<(DeviceKind, u32, DeviceRun)>,
    pub idle_spinner: bool,
    /// Which choices `--tune` made.
    pub tuned: Tune,
}

impl Policy {
    /// Chooses for `run`, with `tune`'s choices taking precedence.
    pub fn choose(run: &Run, tune: Tune) -> Policy {
        let cpus = run.cpus.len().max(1);
        let vcpus = run.compartments as usize;
        let wants_thread = |kind: DeviceKind| match kind {
            DeviceKind::Net => true,
            DeviceKind::Block => false,
        };
        // Threads if every device had its own.
        let all = vcpus + run.devices.len();
        let devices: Vec<(DeviceKind, u32, DeviceRun)> = run
            .devices
            .iter()
            .map(|&(kind, owner)| {
                let how = match (kind, tune.blk) {
                    (DeviceKind::Block, Choice::Set(how)) => how,
                    _ if wants_thread(kind) || all <= cpus => DeviceRun::OwnThread,
                    _ => DeviceRun::OwnerVcpu,
                };
                (kind, owner, how)
            })
            .collect();
        let device_threads = devices
            .iter()
            .filter(|d| d.2 == DeviceRun::OwnThread)
            .count();
        let busy = vcpus + device_threads;
        let crowded = busy > cpus;
        let spin_rounds = match tune.spin {
            Choice::Set(n) => n,
            Choice::Auto if crowded => DEFAULT_SPIN_ROUNDS,
            Choice::Auto => DEDICATED_SPIN_ROUNDS,
        };
        let pin = matches!(tune.pin, Choice::Set(true));
        let mut threads: Vec<ThreadPlan> = (0..run.compartments)
            .map(|c| ThreadPlan {
                name: format!("vcpu-{c}"),
                cpu: None,
            })
            .collect();
        for (kind, owner, how) in &devices {
            if *how == DeviceRun::OwnThread {
                threads.push(ThreadPlan {
                    name: format!("{}-{owner}", kind.name()),
                    cpu: None,
                });
            }
        }
        if pin {
            // Round-robin in start order; a device thread goes with its owner's vCPU,
            // so that their hand-offs stay on one CPU.
            for (i, t) in threads.iter_mut().enumerate().take(vcpus) {
                t.cpu = Some(run.cpus[i % run.cpus.len().max(1)]);
            }
            let owners: Vec<Option<usize>> = threads.iter().map(|t| t.cpu).collect();
            let mut at = vcpus;
            for (_, owner, how) in &devices {
                if *how == DeviceRun::OwnThread {
                    threads[at].cpu = owners[*owner as usize];
                    at += 1;
                }
            }
        }
        Policy {
            cpus: run.cpus.clone(),
            threads,
            crowded,
            spin_rounds,
            devices,
            idle_spinner: matches!(tune.idle_spinner, Choice::Set(true)),
            tuned: tune,
        }
    }

    /// Where the device of `kind` runs.
    pub fn device_run(&self, kind: DeviceKind) -> DeviceRun {
        self.devices
            .iter()
            .find(|d| d.0 == kind)
            .map_or(DeviceRun::OwnThread, |d| d.2)
    }

    /// The CPU thread `name` is pinned to, if any.
    pub fn cpu_of(&self, name: &str) -> Option<usize> {
        self.threads.iter().find(|t| t.name == name)?.cpu
    }

    /// One line of JSON for benchmark scripts.
    pub fn json(&self) -> String {
        let cpus: Vec<String> = self.cpus.iter().map(ToString::to_string).collect();
        let threads: Vec<String> = self
            .threads
            .iter()
            .map(|t| match t.cpu {
                Some(c) => format!("{{\"name\":\"{}\",\"cpu\":{c}}}", t.name),
                None => format!("{{\"name\":\"{}\",\"cpu\":null}}", t.name),
            })
            .collect();
        let devices: Vec<String> = self
            .devices
            .iter()
            .map(|(kind, owner, how)| {
                format!(
                    "{{\"device\":\"{}\",\"owner\":{owner},\"runs\":\"{}\"}}",
                    kind.name(),
                    run_name(*how)
                )
            })
            .collect();
        format!(
            "{{\"cpus\":[{}],\"threads\":[{}],\"crowded\":{},\"spin_rounds\":{},\"wait\":\"exit+eventfd\",\"wake\":\"doorbell ioeventfd\",\"devices\":[{}],\"idle_spinner\":{}}}",
            cpus.join(","),
            threads.join(","),
            self.crowded,
            self.spin_rounds,
            devices.join(","),
            self.idle_spinner
        )
    }
}

fn run_name(how: DeviceRun) -> &'static str {
    match how {
        DeviceRun::OwnThread => "own thread",
        DeviceRun::OwnerVcpu => "owner's vCPU",
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} thread(s) on {} CPU(s) {:?} ({}); guests spin {} rounds, then sleep (exit, eventfd), woken by a doorbell (ioeventfd)",
            self.threads.len(),
            self.cpus.len(),
            self.cpus,
            if self.crowded { "crowded" } else { "a CPU each" },
            self.spin_rounds
        )?;
        for (kind, owner, how) in &self.devices {
            write!(
                f,
                "; {} of compartment {owner}: {}",
                kind.name(),
                run_name(*how)
            )?;
        }
        let pinned: Vec<String> = self
            .threads
            .iter()
            .filter_map(|t| t.cpu.map(|c| format!("{}->{c}", t.name)))
            .collect();
        if !pinned.is_empty() {
            write!(f, "; pinned {}", pinned.join(" "))?;
        }
        if self.idle_spinner {
            write!(f, "; an idle spinner per CPU")?;
        }
        Ok(())
    }
}

pub use devices::affinity::{allowed_cpus, pin_current_thread};

/// Starts a SCHED_IDLE thread spinning on each of `cpus` for the life of the process:
/// it runs only when nothing else wants the CPU, and keeps the outer hypervisor from
/// halting it, which makes a wake-up of a thread there cheaper (REFERENCE.md).
pub fn start_idle_spinners(cpus: &[usize]) -> io::Result<()> {
    for &cpu in cpus {
        std::thread::Builder::new()
            .name(format!("idle-{cpu}"))
            .spawn(move || {
                let _ = pin_current_thread(cpu);
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 is this thread; `param` is a valid sched_param.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                loop {
                    std::hint::spin_loop();
                }
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(compartments: u32, devices: &[(DeviceKind, u32)], cpus: usize) -> Run {
        Run {
            compartments,
            devices: devices.to_vec(),
            cpus: (0..cpus).collect(),
        }
    }

    #[test]
    fn threads_not_compartments_are_counted() {
        // 2 compartments and a disk on 2 CPUs: 3 threads, so the disk moves into its
        // owner's vCPU and the 2 vCPUs have a CPU each again.
        let p = Policy::choose(&run(2, &[(DeviceKind::Block, 1)], 2), Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnerVcpu);
        assert!(!p.crowded);
        assert_eq!(p.spin_rounds, DEDICATED_SPIN_ROUNDS);
        assert_eq!(p.threads.len(), 2);
        // One compartment and a disk: a CPU each, the device keeps its thread.
        let p = Policy::choose(&run(1, &[(DeviceKind::Block, 0)], 2), Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnThread);
        assert_eq!(p.spin_rounds, DEDICATED_SPIN_ROUNDS);
        assert_eq!(p.threads.len(), 2);
    }

    #[test]
    fn a_crowded_run_spins_less() {
        let p = Policy::choose(&run(3, &[(DeviceKind::Block, 2)], 2), Tune::default());
        assert!(p.crowded);
        assert_eq!(p.spin_rounds, DEFAULT_SPIN_ROUNDS);
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnerVcpu);
        // The network device always keeps its thread (the tap needs a waiter).
        let p = Policy::choose(&run(2, &[(DeviceKind::Net, 1)], 2), Tune::default());
        assert!(p.crowded);
        assert_eq!(p.device_run(DeviceKind::Net), DeviceRun::OwnThread);
        assert_eq!(p.threads.len(), 3);
    }

    #[test]
    fn the_affinity_mask_is_what_counts() {
        // Confined to one CPU, even one compartment and a disk are crowded.
        let one = Run {
            compartments: 1,
            devices: vec![(DeviceKind::Block, 0)],
            cpus: vec![1],
        };
        let p = Policy::choose(&one, Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnerVcpu);
        assert!(!p.crowded);
        let p = Policy::choose(&run(4, &[], 8), Tune::default());
        assert!(!p.crowded);
        assert_eq!(p.spin_rounds, DEDICATED_SPIN_ROUNDS);
    }

    #[test]
    fn tune_overrides_every_choice() {
        let tune = Tune::parse("spin=7, blk=thread,pin=on,idle-spinner=on").unwrap();
        let p = Policy::choose(
            &run(3, &[(DeviceKind::Block, 2), (DeviceKind::Net, 0)], 2),
            tune,
        );
        assert_eq!(p.spin_rounds, 7);
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnThread);
        assert!(p.idle_spinner);
        // vCPUs round-robin, each device thread with its owner's vCPU.
        let cpus: Vec<(String, Option<usize>)> =
            p.threads.iter().map(|t| (t.name.clone(), t.cpu)).collect();
        assert_eq!(
            cpus,
            [
                ("vcpu-0".to_string(), Some(0)),
                ("vcpu-1".to_string(), Some(1)),
                ("vcpu-2".to_string(), Some(0)),
                ("virtio-blk-2".to_string(), Some(0)),
                ("virtio-net-0".to_string(), Some(0)),
            ]
        );
        assert_eq!(p.cpu_of("virtio-blk-2"), Some(0));
    }

    #[test]
    fn bad_tune_text_says_what_is_wrong() {
        assert_eq!(
            Tune::parse("spin=lots").unwrap_err(),
            "'spin=lots': want a number of rounds or auto"
        );
        assert_eq!(
            Tune::parse("blk=disk").unwrap_err(),
            "'blk=disk': want thread, vcpu or auto"
        );
        assert_eq!(
            Tune::parse("pin=yes").unwrap_err(),
            "'pin=yes': want on, off or auto"
        );
        assert_eq!(
            Tune::parse("fast=1").unwrap_err(),
            "unknown key 'fast' (keys: spin, blk, pin, idle-spinner)"
        );
        assert_eq!(Tune::parse("pin").unwrap_err(), "'pin': want KEY=VALUE");
        assert_eq!(Tune::parse("").unwrap(), Tune::default());
    }

    #[test]
    fn the_json_line_names_every_choice() {
        let p = Policy::choose(&run(2, &[(DeviceKind::Block, 1)], 2), Tune::default());
        assert_eq!(
            p.json(),
            "{\"cpus\":[0,1],\"threads\":[{\"name\":\"vcpu-0\",\"cpu\":null},{\"name\":\"vcpu-1\",\"cpu\":null}],\"crowded\":false,\"spin_rounds\":5000,\"wait\":\"exit+eventfd\",\"wake\":\"doorbell ioeventfd\",\"devices\":[{\"device\":\"virtio-blk\",\"owner\":1,\"runs\":\"owner's vCPU\"}],\"idle_spinner\":false}"
        );
        assert_eq!(
            p.to_string(),
            "2 thread(s) on 2 CPU(s) [0, 1] (a CPU each); guests spin 5000 rounds, then sleep (exit, eventfd), woken by a doorbell (ioeventfd); virtio-blk of compartment 1: owner's vCPU"
        );
    }
}
