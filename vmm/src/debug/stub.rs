//! The GDB remote protocol side: a `gdbstub` target whose threads are compartments.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;

use super::listen::{Conn, GdbListener};
use super::{Action, DebugError, DebugEvent, Debugger, StopKind};

/// How a GDB session ended, as far as the run is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// GDB killed the run.
    Killed,
    /// GDB detached or went away, or was told the run ended: the run goes on (or ends)
    /// without it.
    Over,
}

/// Serves GDB on a thread of its own: waits for it on `listener`, then speaks the
/// protocol until GDB detaches or kills, or the guest ends; `on_end` hears how it
/// ended. A session that fails lets the run go on without the debugger.
pub fn serve_in_background(
    listener: GdbListener,
    dbg: Arc<Debugger>,
    on_end: impl FnOnce(SessionEnd) + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.address();
    crate::stderr_line!("flexos-vmm: waiting for gdb on {addr} (target remote {addr})");
    std::thread::Builder::new()
        .name("gdb".into())
        .spawn(move || {
            crate::sandbox::enter_thread(crate::sandbox::Thread::Gdb);
            on_end(session(listener, &dbg))
        })
        .map(drop)
}

/// Serves one GDB session on the calling thread: waits for GDB on `listener`, then
/// speaks the protocol until it detaches or kills, or the guest ends.
pub(crate) fn session(listener: GdbListener, dbg: &Arc<Debugger>) -> SessionEnd {
    let served = listener.accept().and_then(|conn| {
        dbg.set_in_session(true);
        GdbTarget::new(dbg.clone()).serve(conn)
    });
    let end = match served {
        Ok(DisconnectReason::Kill) => SessionEnd::Killed,
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {
            SessionEnd::Over
        }
        Ok(DisconnectReason::Disconnect) => {
            dbg.detach();
            SessionEnd::Over
        }
        Err(e) => {
            crate::stderr_line!("flexos-vmm: {e}; running on without the debugger");
            dbg.detach();
            SessionEnd::Over
        }
    };
    dbg.set_in_session(false);
    end
}

fn tid(compartment: u32) -> Tid {
    NonZeroUsize::new(compartment as usize + 1).expect("non-zero")
}

/// The target GDB debugs: every compartment of the run.
pub struct GdbTarget {
    dbg: Arc<Debugger>,
    actions: BTreeMap<u32, Action>,
    /// Scheduler locking: threads GDB did not mention stay stopped.
    locked: bool,
}

impl GdbTarget {
    pub fn new(dbg: Arc<Debugger>) -> Self {
        GdbTarget {
            dbg,
            actions: BTreeMap::new(),
            locked: false,
        }
    }

    fn compartment(&self, tid: Tid) -> Result<u32, TargetError<DebugError>> {
        // GDB's thread id is compartment + 1; an id beyond u32 names no compartment
        // (it must not wrap onto one).
        u32::try_from(tid.get() - 1)
            .ok()
            .filter(|&id| id < self.dbg.count())
            .ok_or(TargetError::NonFatal)
    }

    /// Runs the protocol until GDB detaches or kills, or the guest ends.
    pub fn serve(&mut self, conn: Conn) -> Result<DisconnectReason, DebugError> {
        // Every vCPU parks before its first instruction; wait for that so GDB's first
        // register reads have something to read.
        self.dbg.interrupt();
        GdbStub::new(conn)
            .run_blocking::<EventLoop>(self)
            .map_err(|e| DebugError::Connection(e.to_string()))
    }
}

impl Target for GdbTarget {
    type Arch = X86_64_SSE;
    type Error = DebugError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let snap = self
            .dbg
            .snapshot(self.compartment(tid)?)
            .ok_or(TargetError::NonFatal)?;
        let r = snap.regs;
        regs.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ];
        regs.rip = r.rip;
        // GDB's x86-64 register file has 32-bit eflags and selectors: the upper bits
        // of RFLAGS are reserved zero, and a selector is 16 bits in a pushed 64-bit slot.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the fields are 32 bits wide"
        )]
        {
            regs.eflags = r.rflags as u32;
            regs.segments.cs = snap.cs as u32;
            regs.segments.ss = snap.ss as u32;
        }
        let f = snap.fpu;
        for (st, fpr) in regs.st.iter_mut().zip(f.fpr.iter()) {
            st.copy_from_slice(&fpr[..10]);
        }
        regs.fpu.fctrl = f.fcw as u32;
        regs.fpu.fstat = f.fsw as u32;
        regs.fpu.ftag = f.ftwx as u32;
        regs.fpu.fop = f.last_opcode as u32;
        for (x, raw) in regs.xmm.iter_mut().zip(f.xmm.iter()) {
            *x = u128::from_le_bytes(*raw);
        }
        regs.mxcsr = f.mxcsr;
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let id = self.compartment(tid)?;
        let mut snap = self.dbg.snapshot(id).ok_or(TargetError::NonFatal)?;
        let r = &mut snap.regs;
        [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ] = regs.regs;
        r.rip = regs.rip;
        // Only the arithmetic flags, DF and TF are the guest's to change.
        const USER_FLAGS: u64 = 0x0cd5 | (1 << 8);
        r.rflags = (r.rflags & !USER_FLAGS) | (regs.eflags as u64 & USER_FLAGS);
        for (fpr, st) in snap.fpu.fpr.iter_mut().zip(regs.st.iter()) {
            fpr[..10].copy_from_slice(st);
        }
        for (raw, x) in snap.fpu.xmm.iter_mut().zip(regs.xmm.iter()) {
            *raw = x.to_le_bytes();
        }
        snap.fpu.mxcsr = regs.mxcsr & 0xffff;
        if self.dbg.set_snapshot(id, snap) {
            Ok(())
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let n = self.dbg.read_memory(self.compartment(tid)?, start, data);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        if self.dbg.write_memory(self.compartment(tid)?, start, data) {
            Ok(())
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn list_active_threads(
        &mut self,
        thread_is_active: &mut dyn FnMut(Tid),
    ) -> Result<(), Self::Error> {
        // A stop not yet reported (a crash gdb attaches to) comes first: gdb selects
        // the first thread it hears of.
        let first = self.dbg.pending_stop();
        if let Some(id) = first {
            thread_is_active(tid(id));
        }
        for id in (0..self.dbg.count()).filter(|&id| Some(id) != first) {
            thread_is_active(tid(id));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for GdbTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.dbg.resume(&self.actions, self.locked);
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.clear();
        self.locked = false;
        Ok(())
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    // A signal GDB passes on is not delivered: compartments have no signal handlers. A
    // compartment stopped on a crash ends its run when resumed, with or without one.
    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        let id = self
            .compartment(tid)
            .map_err(|_| DebugError::NoSuchThread(tid.get()))?;
        self.actions.insert(id, Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for GdbTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        let id = self
            .compartment(tid)
            .map_err(|_| DebugError::NoSuchThread(tid.get()))?;
        self.actions.insert(id, Action::Step);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for GdbTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget {
    // A refusal is an error reply: GDB says it cannot insert (or remove) the breakpoint.
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.dbg.add_breakpoint(addr) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::info!("refused a breakpoint: {e}");
                Ok(false)
            }
        }
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.dbg.remove_breakpoint(addr).map_err(|e| {
            tracing::warn!("removing a breakpoint: {e}");
            TargetError::NonFatal
        })
    }
}

impl ThreadExtraInfo for GdbTarget {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let id = tid.get() - 1;
        let name = self
            .dbg
            .names
            .get(id)
            .ok_or(DebugError::NoSuchThread(tid.get()))?;
        let text = format!("compartment {id} ({name})");
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = GdbTarget;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut Conn,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<DebugError, std::io::Error>,
    > {
        loop {
            if let Some(event) = target.dbg.next_event(Duration::from_millis(5)) {
                let reason = match event {
                    DebugEvent::Stopped { compartment, kind } => match kind {
                        StopKind::SwBreak => MultiThreadStopReason::SwBreak(tid(compartment)),
                        StopKind::Step => MultiThreadStopReason::SignalWithThread {
                            tid: tid(compartment),
                            signal: Signal::SIGTRAP,
                        },
                        StopKind::Signal(signal) => MultiThreadStopReason::SignalWithThread {
                            tid: tid(compartment),
                            signal,
                        },
                    },
                    DebugEvent::Exited(code) => MultiThreadStopReason::Exited(code),
                    DebugEvent::Terminated(sig) => MultiThreadStopReason::Terminated(sig),
                };
                return Ok(run_blocking::Event::TargetStopped(reason));
            }
            if conn
                .peek()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?
                .is_some()
            {
                let byte = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(byte));
            }
        }
    }

    fn on_interrupt(target: &mut GdbTarget) -> Result<Option<Self::StopReason>, DebugError> {
        let id = target.dbg.interrupt();
        Ok(Some(MultiThreadStopReason::SignalWithThread {
            tid: tid(id),
            signal: Signal::SIGINT,
        }))
    }
}
