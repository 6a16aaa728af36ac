//! Guest-cooperative debugging: one GDB stub for every compartment (DESIGN section 3).
//!
//! KVM's guest-debug exits never fire for ring-3 code on this host, but `int3` and
//! RFLAGS.TF raise #BP/#DB through the guest's IDT, whose trampolines report to the
//! monitor. So breakpoints are 0xCC bytes the monitor patches into guest memory, and a
//! single step is TF set in the frame the trampoline returns through.
//!
//! Each compartment is one GDB thread (tid = compartment id + 1). The stub is
//! all-stop: when one vCPU stops (breakpoint, step, crash, Ctrl-C), every other vCPU is
//! kicked out of KVM_RUN with a signal and parks at its next checkpoint, leaving a
//! [`Snapshot`] of its registers for GDB to read and edit. Resuming writes the
//! snapshots back. This module holds that shared state; `stub` speaks the protocol.

pub mod stub;
pub mod translate;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use gdbstub::common::Signal;
use kvm_bindings::{kvm_fpu, kvm_regs};
use vm_memory::GuestMemoryMmap;

/// Signal used to kick a vCPU thread out of KVM_RUN (the handler does nothing; the
/// interrupted ioctl returns EINTR).
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// What GDB sees of a stopped compartment, and what the vCPU restores on resume.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// The interrupted registers (for a stop inside a trampoline: the frame's view).
    pub regs: kvm_regs,
    pub fpu: kvm_fpu,
    pub cs: u64,
    pub ss: u64,
    /// Guest-physical address of the exception frame the trampoline will `iretq`
    /// through, when the compartment stopped on an exception.
    pub frame: Option<u64>,
}

/// Why a compartment stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    SwBreak,
    Step,
    Signal(Signal),
}

/// What the stub reports to GDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugEvent {
    Stopped { compartment: u32, kind: StopKind },
    Exited(u8),
    Terminated(Signal),
}

/// How GDB asked a compartment to resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Step,
}

/// What the vCPU does after a debug stop ends.
#[derive(Clone, Debug)]
pub enum Resumed {
    /// Carry on running the guest with this (possibly edited) state and action.
    Run(Box<Snapshot>, Action),
    /// The stop was fatal (a crash): end this compartment's run with its report.
    End,
}

#[derive(Default)]
struct ThreadSlot {
    pthread: Option<libc::pthread_t>,
    /// Present while the vCPU is parked.
    parked: Option<Snapshot>,
    /// The vCPU parked on a crash: resuming it ends the run.
    fatal: Option<Signal>,
    /// Set by the stub to let a parked vCPU go.
    go: Option<Action>,
    /// The vCPU must park at its next checkpoint (all-stop, or scheduler locking).
    hold: bool,
    finished: bool,
}

struct State {
    threads: Vec<ThreadSlot>,
    /// Stops not yet reported to GDB, oldest first.
    events: VecDeque<DebugEvent>,
    /// Software breakpoints: address -> original byte in each compartment.
    breakpoints: BTreeMap<u64, Vec<u8>>,
    /// GDB detached: no more stops, exceptions are crashes again.
    detached: bool,
}

/// State shared by the vCPU threads and the stub.
pub struct Debugger {
    pub names: Vec<String>,
    pub mems: Vec<GuestMemoryMmap>,
    pub cr3s: Vec<u64>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Debugger {
    /// A debugger for the given compartments; every vCPU parks before its first
    /// instruction until GDB resumes it.
    pub fn new(
        names: Vec<String>,
        mems: Vec<GuestMemoryMmap>,
        cr3s: Vec<u64>,
    ) -> Result<Self, String> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| format!("cannot install the vCPU kick signal handler: {e}"))?;
        let threads = names
            .iter()
            .map(|_| ThreadSlot {
                hold: true,
                ..ThreadSlot::default()
            })
            .collect();
        Ok(Debugger {
            names,
            mems,
            cr3s,
            state: Mutex::new(State {
                threads,
                events: VecDeque::new(),
                breakpoints: BTreeMap::new(),
                detached: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self) -> u32 {
        u32::try_from(self.names.len()).expect("a run has at most MAX_COMPARTMENTS compartments")
    }

    // ---- called on vCPU threads -------------------------------------------------

    /// Records the calling thread as compartment `id`'s vCPU thread (for kicks).
    pub fn register_thread(&self, id: u32) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.lock().threads[id as usize].pthread = Some(me);
    }

    /// True when compartment `id`'s vCPU must park before entering the guest again.
    pub fn must_park(&self, id: u32) -> bool {
        let s = self.lock();
        s.threads[id as usize].hold && !s.detached
    }

    /// Parks compartment `id` with `snapshot` until GDB resumes it. `event` is reported
    /// to GDB (a kicked vCPU reports nothing); `fatal` marks a crash stop.
    pub fn park(
        &self,
        id: u32,
        snapshot: Snapshot,
        event: Option<StopKind>,
        fatal: Option<Signal>,
    ) -> Resumed {
        let mut s = self.lock();
        if s.detached {
            return match fatal {
                Some(_) => Resumed::End,
                None => Resumed::Run(Box::new(snapshot), Action::Continue),
            };
        }
        let slot = &mut s.threads[id as usize];
        slot.parked = Some(snapshot);
        slot.fatal = fatal;
        slot.go = None;
        if let Some(kind) = event {
            s.threads.iter_mut().for_each(|t| t.hold = true);
            s.events.push_back(DebugEvent::Stopped {
                compartment: id,
                kind,
            });
        }
        self.changed.notify_all();
        loop {
            let slot = &mut s.threads[id as usize];
            if let Some(action) = slot.go.take() {
                let snap = slot.parked.take().unwrap_or(snapshot);
                let fatal = slot.fatal.take();
                self.changed.notify_all();
                return match fatal {
                    Some(sig) => {
                        s.events.push_back(DebugEvent::Terminated(sig));
                        self.changed.notify_all();
                        Resumed::End
                    }
                    None => Resumed::Run(Box::new(snap), action),
                };
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The guest exited with `code` while GDB was attached.
    pub fn exited(&self, id: u32, code: u8) {
        let mut s = self.lock();
        s.threads[id as usize].finished = true;
        if !s.detached {
            s.events.push_back(DebugEvent::Exited(code));
        }
        self.changed.notify_all();
    }

    /// True when `addr` holds one of GDB's breakpoints.
    pub fn is_breakpoint(&self, addr: u64) -> bool {
        self.lock().breakpoints.contains_key(&addr)
    }

    pub fn is_detached(&self) -> bool {
        self.lock().detached
    }

    // ---- called on the stub's thread --------------------------------------------

    /// Kicks every running vCPU until all are parked or finished.
    fn stop_all<'a>(&'a self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        for t in s.threads.iter_mut() {
            t.hold = true;
            // A vCPU told to go that has not woken yet stays parked: the new stop wins.
            t.go = None;
        }
        loop {
            let running: Vec<libc::pthread_t> = s
                .threads
                .iter()
                .filter(|t| t.parked.is_none() && !t.finished)
                .filter_map(|t| t.pthread)
                .collect();
            let unstarted = s.threads.iter().any(|t| t.pthread.is_none() && !t.finished);
            if running.is_empty() && !unstarted {
                return s;
            }
            for t in running {
                // SAFETY: `t` is the pthread of a live vCPU thread (it is unparked and not
                // finished, and vCPU threads outlive the debugger's use of them); the
                // signal has a handler that does nothing.
                unsafe { libc::pthread_kill(t, kick_signal()) };
            }
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(2))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits up to `timeout` for a stop; when one comes, stops every vCPU and returns it.
    pub fn next_event(&self, timeout: Duration) -> Option<DebugEvent> {
        let mut s = self.lock();
        if s.events.is_empty() {
            s = self
                .changed
                .wait_timeout(s, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let event = s.events.pop_front()?;
        if matches!(event, DebugEvent::Stopped { .. }) {
            drop(self.stop_all(s));
        }
        Some(event)
    }

    /// Ctrl-C: stops every vCPU; returns the compartment to report.
    pub fn interrupt(&self) -> u32 {
        let s = self.lock();
        let s = self.stop_all(s);
        (0u32..)
            .zip(&s.threads)
            .find_map(|(id, t)| (!t.finished).then_some(id))
            .unwrap_or(0)
    }

    /// Resumes parked vCPUs with their actions: unmentioned ones continue, or stay
    /// stopped under scheduler locking (`locked`). Stops that happened meanwhile are
    /// reported first: nothing resumes while one is queued.
    pub fn resume(&self, actions: &BTreeMap<u32, Action>, locked: bool) {
        let mut s = self.lock();
        if s.events
            .iter()
            .any(|e| matches!(e, DebugEvent::Stopped { .. }))
        {
            return;
        }
        for (id, t) in (0u32..).zip(s.threads.iter_mut()) {
            let action = match actions.get(&id) {
                Some(a) => Some(*a),
                None if locked => None,
                None => Some(Action::Continue),
            };
            // Under scheduler locking the unmentioned stay parked (and held).
            t.hold = action.is_none();
            if t.parked.is_some() {
                t.go = action;
            }
        }
        self.changed.notify_all();
    }

    /// GDB went away: breakpoints out, everyone runs, exceptions are crashes again.
    pub fn detach(&self) {
        let bps: Vec<(u64, Vec<u8>)> = std::mem::take(&mut self.lock().breakpoints)
            .into_iter()
            .collect();
        for (addr, orig) in bps {
            self.restore_breakpoint(addr, &orig);
        }
        let mut s = self.lock();
        s.detached = true;
        for t in s.threads.iter_mut() {
            t.hold = false;
            if t.parked.is_some() {
                t.go = Some(Action::Continue);
            }
        }
        self.changed.notify_all();
    }

    /// A parked compartment's snapshot.
    pub fn snapshot(&self, id: u32) -> Option<Snapshot> {
        self.lock().threads.get(id as usize)?.parked
    }

    /// Replaces a parked compartment's snapshot; false if it is not parked.
    pub fn set_snapshot(&self, id: u32, snap: Snapshot) -> bool {
        match self.lock().threads.get_mut(id as usize) {
            Some(t) if t.parked.is_some() => {
                t.parked = Some(snap);
                true
            }
            _ => false,
        }
    }

    /// Reads guest-virtual memory of compartment `id`.
    pub fn read_memory(&self, id: u32, addr: u64, buf: &mut [u8]) -> usize {
        translate::read_virt(&self.mems[id as usize], self.cr3s[id as usize], addr, buf)
    }

    /// Writes guest-virtual memory of compartment `id`.
    pub fn write_memory(&self, id: u32, addr: u64, data: &[u8]) -> bool {
        translate::write_virt(&self.mems[id as usize], self.cr3s[id as usize], addr, data)
    }

    /// Plants `int3` at `addr` in every compartment (they all run the same image).
    pub fn add_breakpoint(&self, addr: u64) -> bool {
        let mut s = self.lock();
        if s.breakpoints.contains_key(&addr) {
            return true;
        }
        let mut orig = Vec::with_capacity(self.mems.len());
        for id in 0..self.count() {
            let mut b = [0u8];
            if self.read_memory(id, addr, &mut b) != 1 {
                // Undo what was planted so far.
                for (done, byte) in (0u32..).zip(&orig) {
                    self.write_memory(done, addr, &[*byte]);
                }
                return false;
            }
            orig.push(b[0]);
            self.write_memory(id, addr, &[0xcc]);
        }
        s.breakpoints.insert(addr, orig);
        true
    }

    fn restore_breakpoint(&self, addr: u64, orig: &[u8]) {
        for (id, byte) in (0u32..).zip(orig) {
            self.write_memory(id, addr, &[*byte]);
        }
    }

    /// Removes the breakpoint at `addr` from every compartment.
    pub fn remove_breakpoint(&self, addr: u64) -> bool {
        let orig = self.lock().breakpoints.remove(&addr);
        match orig {
            Some(orig) => {
                self.restore_breakpoint(addr, &orig);
                true
            }
            None => false,
        }
    }
}

/// The signal GDB should see for a CPU exception vector.
pub fn exception_signal(vector: u64) -> Signal {
    match vector {
        0 | 16 | 19 => Signal::SIGFPE,
        1 | 3 => Signal::SIGTRAP,
        6 => Signal::SIGILL,
        17 => Signal::SIGBUS,
        _ => Signal::SIGSEGV,
    }
}
