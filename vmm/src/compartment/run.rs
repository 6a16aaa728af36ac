//! The vCPU loop: runs the guest, serves its hypercalls and its devices' MMIO windows,
//! and turns every other exit into a crash or an isolation violation.

use std::time::{Duration, Instant};

use flexos_abi::PORT_EXCEPTION;
use gdbstub::common::Signal;
use kvm_ioctls::VcpuExit;

use super::{Compartment, Outcome};
use crate::arch::trampolines::SYSCALL_TRAP_ADDR;
use crate::debug::{Debugger, StopKind};
use crate::error::VmmError;
use crate::hypercall::{self, Hypercall};
use crate::mmio;
use crate::report::CrashKind;

impl Compartment {
    /// Runs the vCPU until the guest exits or crashes. With a debugger, the vCPU parks
    /// whenever GDB has the run stopped, and breakpoints, steps and crashes stop it.
    pub fn run(&mut self, debug: Option<&Debugger>) -> Outcome {
        if let Some(d) = debug {
            d.register_thread(self.spec.id);
        }
        loop {
            if let Some(d) = debug.filter(|d| d.must_park(self.spec.id)) {
                if let Err(e) = self.park(d, None, None) {
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
    fn serve(&mut self, hc: Hypercall, debug: Option<&Debugger>) -> Option<Outcome> {
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
                if let Some(d) = debug {
                    d.exited(self.spec.id, code);
                }
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
                if let Some(d) = debug.filter(|d| !d.is_detached()) {
                    let stop = match frame.vector {
                        3 if d.is_breakpoint(frame.rip.wrapping_sub(1)) => {
                            // Back onto the breakpoint: GDB expects the PC there, and the
                            // original instruction runs once GDB takes the 0xCC out.
                            frame.rip -= 1;
                            Some(StopKind::SwBreak)
                        }
                        1 => Some(StopKind::Step),
                        3 => Some(StopKind::Signal(Signal::SIGTRAP)),
                        _ => None,
                    };
                    if let Some(kind) = stop {
                        return self
                            .park(d, Some((at, frame)), Some(kind))
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
