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
//!   irqfds were measured and cannot wake this guest (docs/threads.md), so this is the
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

/// Spin rounds (~3 us) for a vCPU that shares its CPU with another busy thread: long
/// enough to catch a peer on the other CPU that answers at once (a gate round trip is
/// ~0.1 us when both run), short enough not to hold the CPU from a peer that needs it.
/// Measured, gatebench in 3 compartments pinned {bench, relay1 | relay2} {callee}:
/// gate-remote-0 0.08 us against 99 us with no spinning; gate-chain 204 us against 195
/// (both with every vCPU at that budget).
pub const SHARED_SPIN_ROUNDS: u32 = 100;

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
    /// Per compartment: it has nothing to do (it hosts only drivers of devices the run
    /// did not attach, such as blkdev in a run on the RAM file system). Its vCPU
    /// sleeps throughout, so it takes no CPU from the others.
    pub idle: Vec<bool>,
    /// Each device and the compartment that owns it.
    pub devices: Vec<(DeviceKind, u32)>,
    /// The CPUs the monitor may use (its affinity mask), in order.
    pub cpus: Vec<usize>,
}

/// One thread the monitor starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// `vcpu-<compartment>`, or the device's name and owner (`virtio-net-2`).
    pub name: String,
    /// The compartment whose guest code it runs (vCPUs only).
    pub vcpu_of: Option<u32>,
    /// Whether it is counted as wanting a CPU (not an idle compartment's vCPU).
    pub busy: bool,
    /// The CPU it is pinned to, if any.
    pub cpu: Option<usize>,
    /// Guest spin rounds before sleeping (vCPUs only).
    pub spin_rounds: Option<u32>,
}

/// The policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub cpus: Vec<usize>,
    /// Threads that run guest code or device work (vCPUs, device threads), in pipeline
    /// order (see [`Policy::choose`]).
    pub threads: Vec<ThreadPlan>,
    /// More busy threads than CPUs.
    pub crowded: bool,
    /// Where each device runs, in the order given.
    pub devices: Vec<(DeviceKind, u32, DeviceRun)>,
    pub idle_spinner: bool,
    /// Which choices `--tune` made.
    pub tuned: Tune,
}

impl Policy {
    /// Chooses for `run`, with `tune`'s choices taking precedence.
    ///
    /// Busy threads are the vCPUs of compartments that are not idle and the devices'
    /// own threads. With no more of them than CPUs, every thread may spin long and the
    /// scheduler places them. With more (crowded), the threads are pinned in pipeline
    /// order, contiguous runs sharing a CPU: compartments as the placement numbers them
    /// (the default splits put the app first and each driver after what uses it), each
    /// device thread right after its owner's vCPU; neighbours hand off most, and a
    /// hand-off between two threads of one CPU is a switch (~5 us here) where one
    /// across CPUs wakes a halted CPU (~28 us). A vCPU that shares its CPU with another
    /// busy thread spins only briefly ([`SHARED_SPIN_ROUNDS`]: longer, it would delay
    /// the thread it waits for if that one needs the CPU); one alone on its CPU spins
    /// long.
    pub fn choose(run: &Run, tune: Tune) -> Policy {
        let cpus = run.cpus.len().max(1);
        let idle = |c: u32| run.idle.get(c as usize).copied().unwrap_or(false);
        let vcpus = (0..run.compartments).filter(|&c| !idle(c)).count();
        // Threads if every device had its own.
        let all = vcpus + run.devices.len();
        let devices: Vec<(DeviceKind, u32, DeviceRun)> = run
            .devices
            .iter()
            .map(|&(kind, owner)| {
                let how = match (kind, tune.blk) {
                    (DeviceKind::Block, Choice::Set(how)) => how,
                    // The tap needs a thread waiting on it whatever the guest does.
                    (DeviceKind::Net, _) => DeviceRun::OwnThread,
                    _ if all <= cpus => DeviceRun::OwnThread,
                    _ => DeviceRun::OwnerVcpu,
                };
                (kind, owner, how)
            })
            .collect();
        let mut threads = Vec::new();
        for c in 0..run.compartments {
            threads.push(ThreadPlan {
                name: format!("vcpu-{c}"),
                vcpu_of: Some(c),
                busy: !idle(c),
                cpu: None,
                spin_rounds: None,
            });
            for (kind, owner, how) in &devices {
                if *owner == c && *how == DeviceRun::OwnThread {
                    threads.push(ThreadPlan {
                        name: format!("{}-{owner}", kind.name()),
                        vcpu_of: None,
                        busy: true,
                        cpu: None,
                        spin_rounds: None,
                    });
                }
            }
        }
        let busy = threads.iter().filter(|t| t.busy).count();
        let crowded = busy > cpus;
        let pin = match tune.pin {
            Choice::Set(on) => on,
            Choice::Auto => crowded && cpus > 1,
        };
        if pin {
            // Busy threads in contiguous runs, as evenly as the counts allow (the first
            // CPUs take one more); an idle vCPU goes with the thread before it.
            let (each, extra) = (busy / cpus, busy % cpus);
            let mut cpu_at = 0;
            let mut taken = 0;
            for t in threads.iter_mut() {
                let quota = each + usize::from(cpu_at < extra);
                if t.busy && taken == quota && cpu_at + 1 < cpus {
                    cpu_at += 1;
                    taken = 0;
                }
                t.cpu = Some(run.cpus[cpu_at.min(run.cpus.len().saturating_sub(1))]);
                if t.busy {
                    taken += 1;
                }
            }
        }
        let sharing: Vec<bool> = threads
            .iter()
            .map(|t| {
                t.cpu.is_some() && threads.iter().filter(|o| o.busy && o.cpu == t.cpu).count() > 1
            })
            .collect();
        for (t, shares) in threads.iter_mut().zip(sharing) {
            if t.vcpu_of.is_some() {
                t.spin_rounds = Some(match tune.spin {
                    Choice::Set(n) => n,
                    Choice::Auto if !crowded => DEDICATED_SPIN_ROUNDS,
                    // One CPU for all: a spinning waiter holds the CPU its peer needs.
                    Choice::Auto if cpus == 1 => 0,
                    Choice::Auto if t.cpu.is_none() => DEFAULT_SPIN_ROUNDS,
                    Choice::Auto if shares => SHARED_SPIN_ROUNDS,
                    Choice::Auto => DEDICATED_SPIN_ROUNDS,
                });
            }
        }
        Policy {
            cpus: run.cpus.clone(),
            threads,
            crowded,
            devices,
            idle_spinner: matches!(tune.idle_spinner, Choice::Set(true)),
            tuned: tune,
        }
    }

    /// Guest spin rounds before sleeping for compartment `c`.
    pub fn spin_rounds(&self, c: u32) -> u32 {
        self.threads
            .iter()
            .find(|t| t.vcpu_of == Some(c))
            .and_then(|t| t.spin_rounds)
            .unwrap_or(DEFAULT_SPIN_ROUNDS)
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
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        let threads: Vec<String> = self
            .threads
            .iter()
            .map(|t| {
                format!(
                    "{{\"name\":\"{}\",\"busy\":{},\"cpu\":{},\"spin_rounds\":{}}}",
                    t.name,
                    t.busy,
                    opt(t.cpu.map(|c| c.to_string())),
                    opt(t.spin_rounds.map(|n| n.to_string()))
                )
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
            "{{\"cpus\":[{}],\"threads\":[{}],\"crowded\":{},\"wait\":\"exit+eventfd\",\"wake\":\"doorbell ioeventfd\",\"devices\":[{}],\"idle_spinner\":{}}}",
            cpus.join(","),
            threads.join(","),
            self.crowded,
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
        let busy = self.threads.iter().filter(|t| t.busy).count();
        write!(
            f,
            "{busy} busy thread(s) on {} CPU(s) {:?} ({}); a waiting guest spins, then sleeps (exit, eventfd) until a doorbell (ioeventfd)",
            self.cpus.len(),
            self.cpus,
            if self.crowded { "crowded" } else { "a CPU each" },
        )?;
        for (kind, owner, how) in &self.devices {
            write!(
                f,
                "; {} of compartment {owner}: {}",
                kind.name(),
                run_name(*how)
            )?;
        }
        let each: Vec<String> = self
            .threads
            .iter()
            .map(|t| {
                let mut s = t.name.clone();
                if !t.busy {
                    s.push_str(" idle");
                }
                if let Some(cpu) = t.cpu {
                    s.push_str(&format!(" cpu {cpu}"));
                }
                if let Some(n) = t.spin_rounds {
                    s.push_str(&format!(" spin {n}"));
                }
                s
            })
            .collect();
        write!(f, "; {}", each.join(", "))?;
        if self.idle_spinner {
            write!(f, "; an idle spinner per CPU")?;
        }
        Ok(())
    }
}

pub use devices::affinity::{allowed_cpus, pin_current_thread};

/// Starts a SCHED_IDLE thread spinning on each of `cpus` for the life of the process:
/// it runs only when nothing else wants the CPU, and keeps the outer hypervisor from
/// halting it, which makes a wake-up of a thread there cheaper (docs/threads.md).
pub fn start_idle_spinners(cpus: &[usize]) -> io::Result<()> {
    for &cpu in cpus {
        std::thread::Builder::new()
            .name(format!("idle-{cpu}"))
            .spawn(move || {
                let _ = pin_current_thread(cpu);
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 is this thread; `param` is a valid sched_param.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                crate::sandbox::enter_thread(crate::sandbox::Thread::IdleSpinner);
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
            idle: vec![false; compartments as usize],
            devices: devices.to_vec(),
            cpus: (0..cpus).collect(),
        }
    }

    /// (name, cpu, spin) of every thread.
    fn placed(p: &Policy) -> Vec<(String, Option<usize>, Option<u32>)> {
        p.threads
            .iter()
            .map(|t| (t.name.clone(), t.cpu, t.spin_rounds))
            .collect()
    }

    fn t(
        name: &str,
        cpu: Option<usize>,
        spin: Option<u32>,
    ) -> (String, Option<usize>, Option<u32>) {
        (name.to_string(), cpu, spin)
    }

    #[test]
    fn threads_not_compartments_are_counted() {
        // 2 compartments and a disk on 2 CPUs: 3 threads, so the disk moves into its
        // owner's vCPU and the 2 vCPUs have a CPU each again.
        let p = Policy::choose(&run(2, &[(DeviceKind::Block, 1)], 2), Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnerVcpu);
        assert!(!p.crowded);
        assert_eq!(
            placed(&p),
            [
                t("vcpu-0", None, Some(DEDICATED_SPIN_ROUNDS)),
                t("vcpu-1", None, Some(DEDICATED_SPIN_ROUNDS)),
            ]
        );
        // One compartment and a disk: a CPU each, the device keeps its thread.
        let p = Policy::choose(&run(1, &[(DeviceKind::Block, 0)], 2), Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnThread);
        assert_eq!(p.spin_rounds(0), DEDICATED_SPIN_ROUNDS);
        assert_eq!(p.threads.len(), 2);
    }

    #[test]
    fn a_crowded_run_is_pinned_in_pipeline_order() {
        // iperf in 3 compartments: app, net, netdev and the net device's thread on 2
        // CPUs: {app, net} and {netdev, its device}, each spinning only briefly.
        let p = Policy::choose(&run(3, &[(DeviceKind::Net, 2)], 2), Tune::default());
        assert!(p.crowded);
        assert_eq!(
            placed(&p),
            [
                t("vcpu-0", Some(0), Some(SHARED_SPIN_ROUNDS)),
                t("vcpu-1", Some(0), Some(SHARED_SPIN_ROUNDS)),
                t("vcpu-2", Some(1), Some(SHARED_SPIN_ROUNDS)),
                t("virtio-net-2", Some(1), None),
            ]
        );
        // sqlite on a disk in 3 compartments: the disk in blkdev's vCPU; 3 threads,
        // the first CPU takes two; blkdev alone on the second spins long.
        let p = Policy::choose(&run(3, &[(DeviceKind::Block, 2)], 2), Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnerVcpu);
        assert_eq!(
            placed(&p),
            [
                t("vcpu-0", Some(0), Some(SHARED_SPIN_ROUNDS)),
                t("vcpu-1", Some(0), Some(SHARED_SPIN_ROUNDS)),
                t("vcpu-2", Some(1), Some(DEDICATED_SPIN_ROUNDS)),
            ]
        );
    }

    #[test]
    fn an_idle_compartment_takes_no_cpu() {
        // sqlite on the RAM file system in 3 compartments: blkdev has no disk and
        // nothing to do, so app and vfs have a CPU each.
        let mut r = run(3, &[], 2);
        r.idle[2] = true;
        let p = Policy::choose(&r, Tune::default());
        assert!(!p.crowded);
        assert_eq!(
            placed(&p),
            [
                t("vcpu-0", None, Some(DEDICATED_SPIN_ROUNDS)),
                t("vcpu-1", None, Some(DEDICATED_SPIN_ROUNDS)),
                t("vcpu-2", None, Some(DEDICATED_SPIN_ROUNDS)),
            ]
        );
        // Crowded anyway (4 busy): the idle vCPU goes with the thread before it.
        let mut r = run(5, &[], 2);
        r.idle[1] = true;
        let p = Policy::choose(&r, Tune::default());
        assert_eq!(
            placed(&p)
                .iter()
                .map(|(n, c, _)| (n.clone(), *c))
                .collect::<Vec<_>>(),
            [
                ("vcpu-0".to_string(), Some(0)),
                ("vcpu-1".to_string(), Some(0)),
                ("vcpu-2".to_string(), Some(0)),
                ("vcpu-3".to_string(), Some(1)),
                ("vcpu-4".to_string(), Some(1)),
            ]
        );
    }

    #[test]
    fn the_affinity_mask_is_what_counts() {
        // Confined to one CPU, one compartment and a disk share it: the disk runs in
        // the vCPU, which then has the CPU to itself.
        let one = Run {
            compartments: 1,
            idle: vec![false],
            devices: vec![(DeviceKind::Block, 0)],
            cpus: vec![1],
        };
        let p = Policy::choose(&one, Tune::default());
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnerVcpu);
        assert!(!p.crowded);
        // 2 compartments on one CPU: crowded, nothing to pin across, and no spinning:
        // the waiter's peer needs that very CPU.
        let p = Policy::choose(
            &Run {
                compartments: 2,
                idle: vec![false, false],
                devices: vec![],
                cpus: vec![0],
            },
            Tune::default(),
        );
        assert!(p.crowded);
        assert_eq!(p.spin_rounds(0), 0);
        let p = Policy::choose(&run(4, &[], 8), Tune::default());
        assert!(!p.crowded);
        assert_eq!(p.spin_rounds(3), DEDICATED_SPIN_ROUNDS);
    }

    #[test]
    fn tune_overrides_every_choice() {
        let tune = Tune::parse("spin=7, blk=thread,pin=on,idle-spinner=on").unwrap();
        let p = Policy::choose(
            &run(3, &[(DeviceKind::Block, 2), (DeviceKind::Net, 0)], 2),
            tune,
        );
        assert_eq!(p.device_run(DeviceKind::Block), DeviceRun::OwnThread);
        assert!(p.idle_spinner);
        assert_eq!(
            placed(&p),
            [
                t("vcpu-0", Some(0), Some(7)),
                t("virtio-net-0", Some(0), None),
                t("vcpu-1", Some(0), Some(7)),
                t("vcpu-2", Some(1), Some(7)),
                t("virtio-blk-2", Some(1), None),
            ]
        );
        assert_eq!(p.cpu_of("virtio-blk-2"), Some(1));
        let p = Policy::choose(
            &run(3, &[(DeviceKind::Net, 2)], 2),
            Tune::parse("pin=off").unwrap(),
        );
        assert!(p.threads.iter().all(|t| t.cpu.is_none()));
        assert_eq!(p.spin_rounds(0), DEFAULT_SPIN_ROUNDS);
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
    fn the_json_line_and_the_text_name_every_choice() {
        let p = Policy::choose(&run(2, &[(DeviceKind::Block, 1)], 2), Tune::default());
        assert_eq!(
            p.json(),
            "{\"cpus\":[0,1],\"threads\":[{\"name\":\"vcpu-0\",\"busy\":true,\"cpu\":null,\"spin_rounds\":5000},{\"name\":\"vcpu-1\",\"busy\":true,\"cpu\":null,\"spin_rounds\":5000}],\"crowded\":false,\"wait\":\"exit+eventfd\",\"wake\":\"doorbell ioeventfd\",\"devices\":[{\"device\":\"virtio-blk\",\"owner\":1,\"runs\":\"owner's vCPU\"}],\"idle_spinner\":false}"
        );
        assert_eq!(
            p.to_string(),
            "2 busy thread(s) on 2 CPU(s) [0, 1] (a CPU each); a waiting guest spins, then sleeps (exit, eventfd) until a doorbell (ioeventfd); virtio-blk of compartment 1: owner's vCPU; vcpu-0 spin 5000, vcpu-1 spin 5000"
        );
    }
}
