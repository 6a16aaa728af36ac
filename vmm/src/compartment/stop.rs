//! How a compartment stops: crash reports (registers, frame-pointer backtrace, console
//! tail) and, with a debugger, stopping in a snapshot the debugger can read and edit.

use flexos_abi::ExceptionFrame;
use kvm_bindings::kvm_regs;
use vm_memory::{Bytes, GuestAddress};

use super::hook::{Resume, Snapshot, Stop, StopHook};
use super::{Compartment, Outcome};
use crate::arch::{cpu, trampolines};
use crate::error::{Result, VmmError};
use crate::memory::MemoryError;
use crate::pod::Pod;
use crate::report::{AddressMap, CrashKind, CrashReport, MAX_FRAMES};

impl Compartment {
    /// A crash: with a debugger (attached, or waiting for a crash) the compartment
    /// first stops so the debugger can inspect it; either way the run then ends with
    /// the report. A detached debugger lets a crash stop go at once.
    pub(super) fn fatal(
        &mut self,
        kind: CrashKind,
        frame: Option<(u64, ExceptionFrame)>,
        debug: Option<&dyn StopHook>,
    ) -> Outcome {
        let outcome = self.crash(kind, frame.map(|f| f.1));
        if let (Some(d), Outcome::Crashed(report)) = (debug, &outcome) {
            if let Ok(snap) = self.snapshot(frame) {
                // Resuming a crash stop always ends the run: nothing to restore.
                let _ = d.stop(self.spec.id, snap, Stop::Crash(&report.kind));
            }
        }
        outcome
    }

    /// The registers GDB should see: the interrupted state for a stop inside an
    /// exception trampoline, the vCPU's own otherwise.
    fn snapshot(&self, frame: Option<(u64, ExceptionFrame)>) -> Result<Snapshot> {
        let mut regs = self
            .vcpu
            .get_regs()
            .map_err(VmmError::kvm("KVM_GET_REGS"))?;
        let fpu = self.vcpu.get_fpu().map_err(VmmError::kvm("KVM_GET_FPU"))?;
        let sregs = self
            .vcpu
            .get_sregs()
            .map_err(VmmError::kvm("KVM_GET_SREGS"))?;
        let (mut cs, mut ss) = (sregs.cs.selector as u64, sregs.ss.selector as u64);
        if let Some((_, f)) = frame {
            regs = trampolines::interrupted_regs(regs, &f);
            (cs, ss) = (f.cs, f.ss);
        }
        Ok(Snapshot {
            regs,
            fpu,
            cs,
            ss,
            frame: frame.map(|f| f.0),
        })
    }

    /// Stops this compartment for the debugger and, once resumed, puts back whatever
    /// the debugger left in the snapshot (the frame for a trampoline stop, the vCPU
    /// otherwise), with TF set exactly when it asked for a single step.
    pub(super) fn stop_for_debugger(
        &mut self,
        d: &dyn StopHook,
        frame: Option<(u64, ExceptionFrame)>,
        why: Stop<'_>,
    ) -> Result<()> {
        let snap = self.snapshot(frame)?;
        let (snap, tf) = match d.stop(self.spec.id, snap, why) {
            Resume::Continue(snap) => (snap, 0),
            Resume::Step(snap) => (snap, cpu::RFLAGS_TF),
            Resume::End => return Ok(()),
        };
        let rflags = (snap.regs.rflags & !cpu::RFLAGS_TF) | tf;
        match (snap.frame, frame) {
            (Some(at), Some((_, mut f))) => {
                // The vCPU sits in the trampoline after its `out`: GPRs it did not touch
                // go back into the vCPU, the rest into the frame it will `iretq` through.
                let mut cur = self
                    .vcpu
                    .get_regs()
                    .map_err(VmmError::kvm("KVM_GET_REGS"))?;
                let r = snap.regs;
                (cur.rbx, cur.rcx, cur.rsi, cur.rdi, cur.rbp) = (r.rbx, r.rcx, r.rsi, r.rdi, r.rbp);
                (cur.r8, cur.r9, cur.r10, cur.r11) = (r.r8, r.r9, r.r10, r.r11);
                (cur.r12, cur.r13, cur.r14, cur.r15) = (r.r12, r.r13, r.r14, r.r15);
                self.vcpu
                    .set_regs(&cur)
                    .map_err(VmmError::kvm("KVM_SET_REGS"))?;
                trampolines::write_frame(&mut f, &kvm_regs { rflags, ..r });
                self.mem
                    .write_obj(Pod(f), GuestAddress(at))
                    .map_err(|source| MemoryError::Write {
                        what: "the exception frame",
                        addr: at,
                        source,
                    })?;
            }
            _ => {
                let mut r = snap.regs;
                r.rflags = rflags;
                self.vcpu
                    .set_regs(&r)
                    .map_err(VmmError::kvm("KVM_SET_REGS"))?;
            }
        }
        self.vcpu
            .set_fpu(&snap.fpu)
            .map_err(VmmError::kvm("KVM_SET_FPU"))
    }

    /// Collects a crash report. `frame` is the interrupted state for exceptions; other
    /// crashes use the vCPU registers as they are.
    fn crash(&mut self, mut kind: CrashKind, frame: Option<ExceptionFrame>) -> Outcome {
        let mut regs: kvm_regs = match self.vcpu.get_regs() {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed(VmmError::Kvm {
                    what: "KVM_GET_REGS",
                    source: e,
                })
            }
        };
        if let Some(f) = frame {
            regs = trampolines::interrupted_regs(regs, &f);
        }
        if let CrashKind::Syscall = kind {
            // `syscall` left the return address in RCX and the flags in R11.
            regs.rip = regs.rcx.wrapping_sub(2);
            regs.rflags = regs.r11;
        }
        if let Some(violation) = self.readonly_write(&kind) {
            kind = violation;
        }
        if let Some(violation) = self.hypercall_violation(&kind) {
            kind = violation;
        }
        if let CrashKind::Violation { gpa, owner, .. } = &mut kind {
            *owner = self.describe_gpa(*gpa);
        }
        let (backtrace, truncated) = self.backtrace(regs.rip, regs.rbp);
        Outcome::Crashed(Box::new(CrashReport {
            compartment: self.spec.id,
            name: self.spec.name.clone(),
            components: self.spec.components.clone(),
            kind,
            regs,
            backtrace,
            truncated,
            console_tail: self.console.tail(),
            map: AddressMap {
                shared_size: self.layout.shared_size,
                stack_guard: self.layout.stack_guard(),
                image: flexos_abi::IMAGE_BASE..self.layout.image_end,
            },
        }))
    }

    /// Follows the frame-pointer chain from `rbp` through the stack (the data window);
    /// stops at a null, misaligned, non-increasing or out-of-window frame pointer (the
    /// guest's stack is untrusted).
    fn backtrace(&self, rip: u64, mut rbp: u64) -> (Vec<u64>, bool) {
        let mut pcs = vec![rip];
        let window = &self.layout.data;
        while pcs.len() < MAX_FRAMES {
            if !rbp.is_multiple_of(8) || rbp < window.start || rbp + 16 > window.end {
                return (pcs, false);
            }
            let (Ok(next), Ok(ret)) = (
                self.mem.read_obj::<u64>(GuestAddress(rbp)),
                self.mem.read_obj::<u64>(GuestAddress(rbp + 8)),
            ) else {
                return (pcs, false);
            };
            if ret == 0 {
                return (pcs, false);
            }
            pcs.push(ret);
            if next <= rbp {
                return (pcs, false);
            }
            rbp = next;
        }
        (pcs, true)
    }
}
