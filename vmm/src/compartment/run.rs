//! The vCPU loop: runs the guest, serves its hypercalls and its devices' MMIO windows,
//! and turns every other exit into a crash or an isolation violation.

use std::time::{Duration, Instant};

use flexos_abi::PORT_EXCEPTION;
use kvm_ioctls::VcpuExit;

use super::hook::{Stop, StopHook};
use super::{Compartment, Outcome};
use crate::arch::trampolines::SYSCALL_TRAP_ADDR;
use crate::error::VmmError;
use crate::hypercall::{self, Hypercall};
use crate::mmio;
use crate::report::CrashKind;

/// Tells the debugger that a vCPU thread is done, however it leaves the loop.
struct Finished<'a> {
    hook: &'a dyn StopHook,
    id: u32,
    outcome: Option<&'a Outcome>,
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.hook.vcpu_finished(self.id, self.outcome);
    }
}

impl Compartment {
    /// Runs the vCPU until the guest exits or crashes. With a debugger, the vCPU stops
    /// whenever the debugger holds the run, and breakpoints, steps and crashes stop it.
    pub fn run(&mut self, debug: Option<&dyn StopHook>) -> Outcome {
        let Some(hook) = debug else {
            return self.run_loop(None);
        };
        hook.vcpu_started(self.spec.id);
        let mut finished = Finished {
            hook,
            id: self.spec.id,
            outcome: None,
        };
        let outcome = self.run_loop(Some(hook));
        finished.outcome = Some(&outcome);
        drop(finished);
        outcome
    }

    fn run_loop(&mut self, debug: Option<&dyn StopHook>) -> Outcome {
        let _ = self.milestones.first_entry.set(std::time::Instant::now());
        loop {
            if let Some(d) = debug.filter(|d| d.must_stop(self.spec.id)) {
                if let Err(e) = self.stop_for_debugger(d, None, Stop::Held) {
                    return Outcome::Failed(e);
                }
            }
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => {
                    return Outcome::Failed(VmmError::Kvm {
                        what: "KVM_RUN",
                        source: e,
                    })
                }
            };
            let event = match exit {
                VcpuExit::IoOut(port, data) => {
                    // Copy the value out so the borrow of the run area ends here.
                    let mut value = [0u8; 4];
                    let len = data.len().min(value.len());
                    value[..len].copy_from_slice(&data[..len]);
                    let bounds = self.bounds();
                    let cpl = if port == PORT_EXCEPTION {
                        // Only exception reports need the privilege level (one more ioctl).
                        match self.vcpu.get_sregs() {
                            Ok(s) => s.cs.dpl,
                            Err(e) => {
                                return Outcome::Failed(VmmError::Kvm {
                                    what: "KVM_GET_SREGS",
                                    source: e,
                                })
                            }
                        }
                    } else {
                        3
                    };
                    match hypercall::decode(&self.mem, &bounds, port, &value[..len], cpl) {
                        Ok(hc) => match self.serve(hc, debug) {
                            Some(outcome) => return outcome,
                            None => continue,
                        },
                        Err(why) => CrashKind::BadHypercall(why),
                    }
                }
                VcpuExit::IoIn(port, _) => CrashKind::UnexpectedExit(format!(
                    "read from I/O port {port:#x}, which no device owns"
                )),
                VcpuExit::MmioRead(gpa, data) => match self.mmio.lookup(gpa, data.len()) {
                    Some((device, offset)) => {
                        mmio::lock(device).read(offset, data);
                        tracing::trace!(offset, len = data.len(), "device register read");
                        continue;
                    }
                    None => CrashKind::Violation {
                        gpa,
                        len: data.len(),
                        write: false,
                        owner: None,
                    },
                },
                VcpuExit::MmioWrite(gpa, data) => match self.mmio.lookup(gpa, data.len()) {
                    Some((device, offset)) => {
                        // A queue kick never gets here: it is an ioeventfd (see attach).
                        tracing::trace!(offset, len = data.len(), "device register write");
                        mmio::lock(device).write(offset, data);
                        continue;
                    }
                    None => CrashKind::Violation {
                        gpa,
                        len: data.len(),
                        write: true,
                        owner: None,
                    },
                },
                VcpuExit::Shutdown => CrashKind::TripleFault,
                VcpuExit::Hlt => CrashKind::UnexpectedExit("halted".into()),
                VcpuExit::FailEntry(reason, _) => {
                    return Outcome::Failed(VmmError::EntryFailed { reason })
                }
                VcpuExit::InternalError => match self.internal_error() {
                    Ok(kind) => kind,
                    Err(e) => return Outcome::Failed(e),
                },
                other => CrashKind::UnexpectedExit(format!("unexpected VM exit {other:?}")),
            };
            return self.fatal(event, None, debug);
        }
    }

    /// Serves one valid hypercall; returns an outcome when the run ends.
    fn serve(&mut self, hc: Hypercall, debug: Option<&dyn StopHook>) -> Option<Outcome> {
        match hc {
            Hypercall::Console(bytes) => {
                self.console.write(&bytes);
                None
            }
            Hypercall::MainReached => {
                let _ = self.milestones.guest_main.set(Instant::now());
                None
            }
            Hypercall::Doorbell(target) => {
                // Normally an ioeventfd catches this in the kernel; writing the eventfd
                // by hand keeps the doorbell working if it did not.
                let _ = self.peers[target as usize].write(1);
                None
            }
            Hypercall::Sleep(timeout_us) => {
                tracing::trace!(compartment = self.spec.id, timeout_us, "sleep");
                self.sleep(Duration::from_micros(timeout_us));
                None
            }
            Hypercall::Exit(code) => {
                self.console.finish();
                Some(Outcome::Exited(code))
            }
            Hypercall::Panic {
                message,
                file,
                line,
                column,
            } => Some(self.fatal(
                CrashKind::Panic {
                    message,
                    file,
                    line,
                    column,
                },
                None,
                debug,
            )),
            Hypercall::Exception { mut frame, at } => {
                if let Some(d) = debug.filter(|d| d.is_attached()) {
                    let stop = match frame.vector {
                        3 if d.is_breakpoint(frame.rip.wrapping_sub(1)) => {
                            // Back onto the breakpoint: GDB expects the PC there, and the
                            // original instruction runs once GDB takes the 0xCC out.
                            frame.rip -= 1;
                            Some(Stop::Breakpoint)
                        }
                        1 => Some(Stop::Step),
                        3 => Some(Stop::Trap),
                        _ => None,
                    };
                    if let Some(why) = stop {
                        return self
                            .stop_for_debugger(d, Some((at, frame)), why)
                            .err()
                            .map(Outcome::Failed);
                    }
                }
                // No silent 0 here: it would read as a null dereference.
                let cr2 = match self.vcpu.get_sregs() {
                    Ok(s) => s.cr2,
                    Err(e) => return Some(Outcome::Failed(VmmError::kvm("KVM_GET_SREGS")(e))),
                };
                if frame.vector == 14 && frame.rip == SYSCALL_TRAP_ADDR && cr2 == SYSCALL_TRAP_ADDR
                {
                    return Some(self.fatal(CrashKind::Syscall, Some((at, frame)), debug));
                }
                Some(self.fatal(
                    CrashKind::Exception {
                        vector: frame.vector,
                        error_code: frame.error_code,
                        cr2,
                    },
                    Some((at, frame)),
                    debug,
                ))
            }
        }
    }

    /// Blocks until this compartment's doorbell rings or `timeout` passes, then clears
    /// the doorbell. A ring that came before the sleep returns at once.
    fn sleep(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.doorbell),
            events: libc::POLLIN,
            revents: 0,
        };
        // Saturates: poll's timeout is an i32 of milliseconds.
        let ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and we pass a
        // count of exactly one.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let _ = self.doorbell.read();
    }
}
