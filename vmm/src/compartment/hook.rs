//! The vCPU loop's one hook for a debugger. The loop says where it stops and why; what
//! a stop means to GDB (signals, stop replies, all-stop) is the implementor's business
//! (`crate::debug`), so the loop never needs to know about the debugger.

use kvm_bindings::{kvm_fpu, kvm_regs};

use super::Outcome;
use crate::report::CrashKind;

/// What a debugger sees of a stopped compartment, and what the vCPU restores on resume.
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

/// Why a compartment stops.
#[derive(Clone, Copy, Debug)]
pub enum Stop<'a> {
    /// Held at a checkpoint (before its first instruction, or while another compartment
    /// is stopped): nothing happened to report.
    Held,
    /// An `int3` the debugger planted; RIP is back on it.
    Breakpoint,
    /// A single step finished.
    Step,
    /// An `int3` of the guest's own.
    Trap,
    /// A crash: resuming ends the compartment's run with its report.
    Crash(&'a CrashKind),
}

/// How a stopped compartment goes on.
#[derive(Clone, Debug)]
pub enum Resume {
    /// Run on with this (possibly edited) state.
    Continue(Box<Snapshot>),
    /// Run one instruction with this state, then stop again.
    Step(Box<Snapshot>),
    /// Nothing to restore: the stop was a crash, and the run ends.
    End,
}

/// A debugger, as the vCPU loop sees it.
pub trait StopHook: Sync {
    /// The calling thread runs compartment `id`'s vCPU from now on.
    fn vcpu_started(&self, id: u32);
    /// True when compartment `id` must stop before entering the guest again.
    fn must_stop(&self, id: u32) -> bool;
    /// False once the debugger has gone: breakpoints and steps are over, and every
    /// exception is a plain crash again.
    fn is_attached(&self) -> bool;
    /// True when `addr` holds a breakpoint the debugger planted.
    fn is_breakpoint(&self, addr: u64) -> bool;
    /// Stops compartment `id` with `snapshot` until the debugger resumes it.
    fn stop(&self, id: u32, snapshot: Snapshot, why: Stop<'_>) -> Resume;
    /// Compartment `id`'s vCPU thread is done: called on every way out of the loop
    /// (`None` while unwinding from a panic), after which the thread is never signalled.
    fn vcpu_finished(&self, id: u32, outcome: Option<&Outcome>);
}
