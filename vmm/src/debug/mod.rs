//! Guest-cooperative debugging: one GDB stub for every compartment (docs/design.md, why the guest runs in ring 3).
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
//! snapshots back. This module holds that shared state and is the vCPU loop's
//! [`StopHook`]; `stub` speaks the protocol, `listen` binds the `--gdb` address and
//! `error` says what can go wrong.

pub mod error;
pub mod listen;
pub mod stub;
pub mod translate;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gdbstub::common::Signal;
use vm_memory::GuestMemoryMmap;

pub use error::DebugError;

use crate::compartment::{Outcome, Resume, Snapshot, Stop, StopHook};
use crate::report::CrashKind;

/// Signal used to kick a vCPU thread out of KVM_RUN (the handler does nothing; the
/// interrupted ioctl returns EINTR).
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Why a compartment stopped, as GDB is told.
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

#[derive(Default)]
struct ThreadSlot {
    pthread: Option<libc::pthread_t>,
    /// Present while the vCPU is parked.
    parked: Option<Snapshot>,
    /// The vCPU parked on a crash: resuming it ends the run.
    fatal: bool,
    /// Set by the stub to let a parked vCPU go.
    go: Option<Action>,
    /// The vCPU must park at its next checkpoint (all-stop, or scheduler locking).
    hold: bool,
    /// The vCPU thread has left its loop (or is about to exit): never kick it again.
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
    /// GDB is connected and the stub is serving it.
    in_session: bool,
    /// When the first crash stop parked its vCPU.
    crashed_at: Option<Instant>,
}

/// State shared by the vCPU threads and the stub.
pub struct Debugger {
    pub names: Vec<String>,
    pub mems: Vec<GuestMemoryMmap>,
    pub cr3s: Vec<u64>,
    /// The image's executable segments: the only place breakpoints may go.
    code: Vec<Range<u64>>,
    /// Post-mortem: no debugger until a crash, so only crashes stop a vCPU.
    post_mortem: bool,
    state: Mutex<State>,
    changed: Condvar,
}

/// The signal GDB sees for a crash.
fn crash_signal(kind: &CrashKind) -> Signal {
    match kind {
        CrashKind::Exception { vector, .. } => exception_signal(*vector),
        CrashKind::Panic { .. } => Signal::SIGABRT,
        CrashKind::BadHypercall(_) | CrashKind::UnexpectedExit(_) | CrashKind::Syscall => {
            Signal::SIGSYS
        }
        // Violations, triple faults, and any other access the guest had no right to.
        _ => Signal::SIGSEGV,
    }
}

impl Debugger {
    /// A debugger for the given compartments, whose executable image memory is `code`;
    /// every vCPU parks before its first instruction until GDB resumes it.
    pub fn new(
        names: Vec<String>,
        mems: Vec<GuestMemoryMmap>,
        cr3s: Vec<u64>,
        code: Vec<Range<u64>>,
    ) -> Result<Self, DebugError> {
        Self::with_hold(names, mems, cr3s, code, true)
    }

    /// A debugger for post-mortem work (`--core`, `--gdb-on-crash`): every vCPU runs
    /// at once, and only a crash stops the run (all-stop) for [`Debugger::wait_for_crash`].
    pub fn on_crash(
        names: Vec<String>,
        mems: Vec<GuestMemoryMmap>,
        cr3s: Vec<u64>,
        code: Vec<Range<u64>>,
    ) -> Result<Self, DebugError> {
        Self::with_hold(names, mems, cr3s, code, false)
    }

    fn with_hold(
        names: Vec<String>,
        mems: Vec<GuestMemoryMmap>,
        cr3s: Vec<u64>,
        code: Vec<Range<u64>>,
        hold: bool,
    ) -> Result<Self, DebugError> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
            .map_err(DebugError::KickHandler)?;
        let threads = names
            .iter()
            .map(|_| ThreadSlot {
                hold,
                ..ThreadSlot::default()
            })
            .collect();
        Ok(Debugger {
            names,
            mems,
            cr3s,
            code,
            post_mortem: !hold,
            state: Mutex::new(State {
                threads,
                events: VecDeque::new(),
                breakpoints: BTreeMap::new(),
                detached: false,
                in_session: false,
                crashed_at: None,
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

    /// True while GDB is connected and being served: an ending run waits for the
    /// session to tell GDB.
    pub fn in_session(&self) -> bool {
        self.lock().in_session
    }

    fn set_in_session(&self, on: bool) {
        self.lock().in_session = on;
    }

    /// Parks compartment `id` with `snapshot` until GDB resumes it. `event` is reported
    /// to GDB (a kicked vCPU reports nothing); `fatal` marks a crash stop, which ends
    /// the run when resumed (`None`).
    fn park(
        &self,
        id: u32,
        snapshot: Snapshot,
        event: Option<StopKind>,
        fatal: bool,
    ) -> Option<(Snapshot, Action)> {
        let mut s = self.lock();
        if s.detached {
            return (!fatal).then_some((snapshot, Action::Continue));
        }
        let slot = &mut s.threads[id as usize];
        slot.parked = Some(snapshot);
        slot.fatal = fatal;
        slot.go = None;
        if fatal && s.crashed_at.is_none() {
            s.crashed_at = Some(Instant::now());
        }
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
                let fatal = std::mem::take(&mut slot.fatal);
                self.changed.notify_all();
                return (!fatal).then_some((snap, action));
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
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
                // SAFETY: `t` is the pthread of a live vCPU thread: every vCPU thread marks
                // itself finished (under this lock, which we hold) before it can exit, on
                // every path out of its loop. The signal's handler does nothing.
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

    /// Waits until a compartment stops on a crash, then stops every vCPU and returns
    /// that compartment, the signal of its crash and when it crashed. The stop stays
    /// queued for GDB to hear. `None` when the run ends some other way first.
    pub fn wait_for_crash(&self) -> Option<(u32, Signal, Instant)> {
        let mut s = self.lock();
        loop {
            match s.events.front() {
                Some(&DebugEvent::Stopped {
                    compartment,
                    kind: StopKind::Signal(signal),
                }) if s.threads[compartment as usize].fatal => {
                    let at = s.crashed_at.unwrap_or_else(Instant::now);
                    drop(self.stop_all(s));
                    return Some((compartment, signal, at));
                }
                Some(_) => return None,
                None => s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// The compartment of the oldest stop GDB has not heard of yet, if any.
    pub fn pending_stop(&self) -> Option<u32> {
        self.lock().events.iter().find_map(|e| match e {
            DebugEvent::Stopped { compartment, .. } => Some(*compartment),
            _ => None,
        })
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
            if let Err(e) = self.restore(addr, &orig) {
                eprintln!("flexos-vmm: removing the breakpoint at {addr:#x}: {e}");
            }
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

    /// Plants `int3` at `addr` in every compartment (they all run the same image, each
    /// from its own copy). Only executable image memory takes breakpoints: elsewhere
    /// (the shared region above all, which every compartment sees) a planted byte could
    /// be read back as some compartment's "original" and outlive the breakpoint.
    pub fn add_breakpoint(&self, addr: u64) -> Result<(), DebugError> {
        if !self.code.iter().any(|r| r.contains(&addr)) {
            return Err(DebugError::NotCode { addr });
        }
        let mut s = self.lock();
        if s.breakpoints.contains_key(&addr) {
            return Ok(());
        }
        let mut orig = Vec::with_capacity(self.mems.len());
        for id in 0..self.count() {
            let mut b = [0u8];
            if self.read_memory(id, addr, &mut b) != 1 {
                // Undo what was planted so far.
                let _ = self.restore(addr, &orig);
                return Err(DebugError::Write {
                    addr,
                    compartment: id,
                });
            }
            orig.push(b[0]);
            if !self.write_memory(id, addr, &[0xcc]) {
                let _ = self.restore(addr, &orig);
                return Err(DebugError::Write {
                    addr,
                    compartment: id,
                });
            }
        }
        s.breakpoints.insert(addr, orig);
        Ok(())
    }

    /// Writes the original bytes back, the last compartment's first: should memory ever
    /// be shared, the first compartment's byte (read before anything was planted) wins.
    fn restore(&self, addr: u64, orig: &[u8]) -> Result<(), DebugError> {
        let mut result = Ok(());
        for (id, byte) in orig.iter().enumerate().rev() {
            // At most MAX_COMPARTMENTS entries: one per compartment.
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            if !self.write_memory(id, addr, &[*byte]) {
                result = Err(DebugError::Write {
                    addr,
                    compartment: id,
                });
            }
        }
        result
    }

    /// Removes the breakpoint at `addr` from every compartment; false if there is none.
    pub fn remove_breakpoint(&self, addr: u64) -> Result<bool, DebugError> {
        let orig = self.lock().breakpoints.remove(&addr);
        match orig {
            Some(orig) => self.restore(addr, &orig).map(|()| true),
            None => Ok(false),
        }
    }
}

impl StopHook for Debugger {
    fn vcpu_started(&self, id: u32) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.lock().threads[id as usize].pthread = Some(me);
    }

    fn must_stop(&self, id: u32) -> bool {
        let s = self.lock();
        s.threads[id as usize].hold && !s.detached
    }

    fn is_attached(&self) -> bool {
        let s = self.lock();
        !s.detached && (!self.post_mortem || s.in_session)
    }

    fn is_breakpoint(&self, addr: u64) -> bool {
        self.lock().breakpoints.contains_key(&addr)
    }

    fn stop(&self, id: u32, snapshot: Snapshot, why: Stop<'_>) -> Resume {
        let (event, fatal) = match why {
            Stop::Held => (None, false),
            Stop::Breakpoint => (Some(StopKind::SwBreak), false),
            Stop::Step => (Some(StopKind::Step), false),
            Stop::Trap => (Some(StopKind::Signal(Signal::SIGTRAP)), false),
            Stop::Crash(kind) => (Some(StopKind::Signal(crash_signal(kind))), true),
        };
        match self.park(id, snapshot, event, fatal) {
            Some((snap, Action::Continue)) => Resume::Continue(Box::new(snap)),
            Some((snap, Action::Step)) => Resume::Step(Box::new(snap)),
            None => Resume::End,
        }
    }

    fn vcpu_finished(&self, id: u32, outcome: Option<&Outcome>) {
        let mut s = self.lock();
        let slot = &mut s.threads[id as usize];
        slot.finished = true;
        slot.parked = None;
        if !s.detached {
            // GDB hears how the run ends, whichever way it does.
            s.events.push_back(match outcome {
                Some(Outcome::Exited(code)) => DebugEvent::Exited(*code),
                Some(Outcome::Crashed(report)) => {
                    DebugEvent::Terminated(crash_signal(&report.kind))
                }
                // KVM failed, or the vCPU thread panicked: the monitor ends the run.
                _ => DebugEvent::Terminated(Signal::SIGKILL),
            });
        }
        self.changed.notify_all();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flexos_abi::{IMAGE_BASE, SHARED_BASE};
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::arch::layout::{GuestLayout, MemoryPlan};
    use crate::arch::paging;
    use crate::error::VmmError;
    use crate::image::{Segment, SegmentPerms};
    use crate::memory::{compartment_memory, SharedRegion};

    /// A debugger over two compartments with one page of code at 1 MiB each and a
    /// shared region both see, as a run has them.
    fn two_compartments() -> (Debugger, SharedRegion) {
        let shared = SharedRegion::new(2 << 20, 2).unwrap();
        let plan = MemoryPlan::new(16 << 20, IMAGE_BASE + 0x1000, 2).unwrap();
        let code = Segment {
            start: IMAGE_BASE,
            end: IMAGE_BASE + 0x1000,
            perms: SegmentPerms {
                write: false,
                exec: true,
            },
        };
        let (mut mems, mut cr3s) = (vec![], vec![]);
        for id in 0..2 {
            let mem = compartment_memory(&plan, id, &shared).unwrap();
            let layout =
                GuestLayout::new(plan, id, vec![code], code.end, shared.mappings(id), 2 << 20);
            cr3s.push(paging::build(&mem, &layout).unwrap());
            mem.write_slice(&[0x90, 0xc3], GuestAddress(IMAGE_BASE))
                .unwrap();
            mems.push(mem);
        }
        mems[0]
            .write_slice(b"MAGIC", GuestAddress(SHARED_BASE))
            .unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        let dbg = Debugger::new(names, mems, cr3s, image_code(&[code])).unwrap();
        (dbg, shared)
    }

    fn image_code(segments: &[Segment]) -> Vec<Range<u64>> {
        segments.iter().map(|s| s.start..s.end).collect()
    }

    fn byte(dbg: &Debugger, id: u32, addr: u64) -> u8 {
        let mut b = [0u8];
        assert_eq!(dbg.read_memory(id, addr, &mut b), 1);
        b[0]
    }

    #[test]
    fn breakpoints_go_only_into_code_and_come_out_exactly() {
        let (dbg, _shared) = two_compartments();
        // Both compartments see the shared region: planting there would have read the
        // first compartment's 0xCC back as the second's original byte.
        assert!(matches!(
            dbg.add_breakpoint(SHARED_BASE),
            Err(DebugError::NotCode { .. })
        ));
        assert_eq!(byte(&dbg, 1, SHARED_BASE), b'M');
        assert!(matches!(
            dbg.add_breakpoint(IMAGE_BASE + 0x1000),
            Err(DebugError::NotCode { .. })
        ));

        dbg.add_breakpoint(IMAGE_BASE + 1).unwrap();
        assert!(dbg.is_breakpoint(IMAGE_BASE + 1));
        assert_eq!(
            (byte(&dbg, 0, IMAGE_BASE + 1), byte(&dbg, 1, IMAGE_BASE + 1)),
            (0xcc, 0xcc)
        );
        assert!(dbg.remove_breakpoint(IMAGE_BASE + 1).unwrap());
        assert_eq!(
            (byte(&dbg, 0, IMAGE_BASE + 1), byte(&dbg, 1, IMAGE_BASE + 1)),
            (0xc3, 0xc3)
        );
        assert!(!dbg.remove_breakpoint(IMAGE_BASE + 1).unwrap());
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            regs: Default::default(),
            fpu: Default::default(),
            cs: 0,
            ss: 0,
            frame: None,
        }
    }

    #[test]
    fn a_vcpu_that_fails_tells_gdb_and_is_never_kicked_again() {
        let (dbg, _shared) = two_compartments();
        let dbg = Arc::new(dbg);
        // Compartment 0 parks before its first instruction, as vCPUs do under gdb.
        let parked = {
            let dbg = dbg.clone();
            std::thread::spawn(move || {
                dbg.vcpu_started(0);
                assert!(dbg.must_stop(0));
                matches!(dbg.stop(0, snapshot(), Stop::Held), Resume::Continue(_))
            })
        };
        // Compartment 1's vCPU fails (KVM_RUN, say) and its thread exits.
        {
            let dbg = dbg.clone();
            std::thread::spawn(move || {
                dbg.vcpu_started(1);
                let failed = Outcome::Failed(VmmError::NoOutcome);
                dbg.vcpu_finished(1, Some(&failed));
            })
            .join()
            .unwrap();
        }
        // Stopping everyone returns (it used to wait for, and signal, the dead thread),
        // and gdb hears that the run is over.
        dbg.interrupt();
        assert_eq!(
            dbg.next_event(Duration::ZERO),
            Some(DebugEvent::Terminated(Signal::SIGKILL))
        );
        dbg.detach();
        assert!(
            parked.join().unwrap(),
            "detaching lets the parked vCPU run on"
        );
    }
}
