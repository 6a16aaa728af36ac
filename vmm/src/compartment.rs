//! One compartment: a KVM VM with one vCPU, its private memory and the shared region,
//! booted straight into the image's entry point in ring 3, and the loop that serves its
//! exits until it exits, crashes or violates isolation.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flexos_abi::{
    BootInfo, ExceptionFrame, BOOT_FLAG_TIMINGS, BOOT_INFO_ADDR, BOOT_INFO_SIZE, NAME_LEN,
    PORT_DOORBELL, PORT_EXCEPTION, SHARED_BASE,
};
use gdbstub::common::Signal;
use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_userspace_memory_region, Msrs};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::layout::{GuestLayout, MemoryPlan};
use crate::arch::{cpu, descriptors, paging};
use crate::console::Console;
use crate::debug::{self, Action, Debugger, Resumed, Snapshot, StopKind};
use crate::error::{Result, VmmError};
use crate::hypercall::{self, GuestBounds, Hypercall};
use crate::image::Image;
use crate::memory::{compartment_memory, SharedRegion};
use crate::pod::Pod;
use crate::report::{AddressMap, CrashKind, CrashReport, MAX_FRAMES};

const MSR_IA32_TSC: u32 = 0x10;

/// What a compartment is asked to be.
pub struct CompartmentSpec {
    pub id: u32,
    pub name: String,
    pub components: Vec<String>,
    /// Component index -> compartment id, for every component of the image.
    pub assignment: Vec<u8>,
    /// Names of all compartments of the run, by id (for reports and the console).
    pub all_names: Arc<Vec<String>>,
    pub guest_args: Vec<String>,
    pub timings: bool,
}

/// How a compartment's run ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(u8),
    Crashed(Box<CrashReport>),
    Failed(VmmError),
}

/// Moments in a compartment's life, for `--timings`; shared with the monitor thread.
#[derive(Debug, Default)]
pub struct Milestones {
    pub vm_created: OnceLock<Instant>,
    pub guest_main: OnceLock<Instant>,
}

/// Every compartment's doorbell: compartment `id` sleeps on `eventfds[id]`; any
/// compartment rings it with `out PORT_DOORBELL, id`, caught in the kernel by an
/// ioeventfd so the ringer never exits to userspace.
pub struct Doorbells {
    eventfds: Vec<EventFd>,
}

impl Doorbells {
    pub fn new(count: u32) -> Result<Self> {
        let eventfds = (0..count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| VmmError::KvmRun(format!("cannot create doorbell eventfds: {e}")))?;
        Ok(Doorbells { eventfds })
    }

    fn bind(&self, vm: &VmFd) -> Result<()> {
        for (target, evt) in self.eventfds.iter().enumerate() {
            vm.register_ioevent(
                evt,
                &IoEventAddress::Pio(PORT_DOORBELL as u64),
                target as u32,
            )
            .map_err(VmmError::kvm("KVM_IOEVENTFD (doorbell)"))?;
        }
        Ok(())
    }

    fn own(&self, id: u32) -> Result<EventFd> {
        self.eventfds[id as usize]
            .try_clone()
            .map_err(|e| VmmError::KvmRun(format!("cannot clone doorbell eventfd: {e}")))
    }
}

pub struct Compartment {
    pub spec: CompartmentSpec,
    // The VM must outlive its vCPU and memory slots.
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    layout: GuestLayout,
    console: Console,
    doorbell: EventFd,
    /// Ring other compartments' doorbells when their ioeventfd did not catch the write.
    peers: Vec<EventFd>,
    pub milestones: Arc<Milestones>,
    /// The page tables' root, for the debugger's address translation.
    pub cr3: u64,
}

/// Writes the boot-info block and the guest arguments into the boot-info window.
fn write_boot_info(
    mem: &GuestMemoryMmap,
    spec: &CompartmentSpec,
    layout: &GuestLayout,
    tsc_khz: u64,
    tsc_now: u64,
) -> Result<()> {
    let header = std::mem::size_of::<BootInfo>() as u64;
    let mut args = Vec::new();
    for a in &spec.guest_args {
        if a.as_bytes().contains(&0) {
            return Err(VmmError::Usage(format!(
                "guest argument {a:?} contains a NUL byte"
            )));
        }
        args.extend_from_slice(a.as_bytes());
        args.push(0);
    }
    if header + args.len() as u64 > BOOT_INFO_SIZE {
        return Err(VmmError::Usage(format!(
            "guest arguments take {} bytes; at most {} fit",
            args.len(),
            BOOT_INFO_SIZE - header
        )));
    }
    let mut info = BootInfo::empty();
    info.flags = if spec.timings { BOOT_FLAG_TIMINGS } else { 0 };
    info.compartment_id = spec.id;
    info.compartment_count = spec.all_names.len() as u32;
    let name = &spec.name.as_bytes()[..spec.name.len().min(NAME_LEN)];
    info.compartment_name[..name.len()].copy_from_slice(name);
    info.mem_size = layout.plan.mem_size;
    info.image_end = layout.image_end;
    info.heap_start = layout.heap_start;
    info.heap_size = layout.heap_end - layout.heap_start;
    info.stack_top = layout.stack_top;
    info.stack_size = layout.stack_top - layout.stack_bottom;
    info.shared_base = SHARED_BASE;
    info.shared_size = layout.shared_size;
    info.tsc_khz = tsc_khz;
    info.tsc_at_start = tsc_now;
    info.argc = spec.guest_args.len() as u32;
    info.args_addr = BOOT_INFO_ADDR + header;
    info.args_len = args.len() as u64;
    info.component_count = spec.assignment.len() as u32;
    info.placement[..spec.assignment.len()].copy_from_slice(&spec.assignment);

    let write = |r: std::result::Result<(), vm_memory::GuestMemoryError>| {
        r.map_err(|e| VmmError::Memory(format!("writing boot info: {e}")))
    };
    write(mem.write_obj(Pod(info), GuestAddress(BOOT_INFO_ADDR)))?;
    write(mem.write_slice(&args, GuestAddress(BOOT_INFO_ADDR + header)))
}

impl Compartment {
    /// Creates the VM, its memory and vCPU, loads the image and sets up the machine
    /// state for the first instruction. Nothing runs yet.
    pub fn create(
        kvm: &Kvm,
        spec: CompartmentSpec,
        image: &Image,
        plan: &MemoryPlan,
        shared: &SharedRegion,
        doorbells: &Doorbells,
    ) -> Result<Compartment> {
        let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
        let mem = compartment_memory(plan, spec.id, shared)?;
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| VmmError::Memory(format!("host address of a region: {e}")))?;
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which this compartment
            // keeps for as long as the VM exists; KVM only accesses it on the guest's behalf.
            unsafe { vm.set_user_memory_region(region_desc) }
                .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        // A lone compartment has nobody to ring, and each VM with an ioeventfd costs
        // ~10 ms more to destroy on this host (measured), so bind only when useful; the
        // userspace fallback in `serve` still answers a stray doorbell.
        if spec.all_names.len() > 1 {
            doorbells.bind(&vm)?;
        }
        let vcpu = vm
            .create_vcpu(0)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let milestones = Arc::new(Milestones::default());
        let _ = milestones.vm_created.set(Instant::now());

        let layout = GuestLayout::new(
            *plan,
            spec.id,
            image.segments.clone(),
            image.end,
            shared.size(),
        );
        image.load(&mem)?;
        descriptors::install(&mem)?;
        let cr3 = paging::build(&mem, &layout)?;
        cpu::setup_cpuid(kvm, &vcpu)?;
        cpu::setup_sregs(&vcpu, cr3)?;
        cpu::setup_fpu(&vcpu)?;
        cpu::setup_regs(&vcpu, image.entry, layout.stack_top, BOOT_INFO_ADDR)?;

        let tsc_khz = vcpu.get_tsc_khz().map(u64::from).unwrap_or(0);
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .map_err(|e| VmmError::Memory(format!("MSR list: {e:?}")))?;
        let tsc_now = match vcpu.get_msrs(&mut msrs) {
            Ok(1) => msrs.as_slice()[0].data,
            _ => 0,
        };
        write_boot_info(&mem, &spec, &layout, tsc_khz, tsc_now)?;

        let prefix = (spec.all_names.len() > 1).then(|| format!("[{}] ", spec.name));
        let doorbell = doorbells.own(spec.id)?;
        let peers = (0..spec.all_names.len() as u32)
            .map(|id| doorbells.own(id))
            .collect::<Result<Vec<_>>>()?;
        Ok(Compartment {
            spec,
            _vm: vm,
            vcpu,
            mem,
            layout,
            console: Console::new(prefix),
            doorbell,
            peers,
            milestones,
            cr3,
        })
    }

    /// This compartment's guest memory (a cheap handle onto the same mappings).
    pub fn memory(&self) -> GuestMemoryMmap {
        self.mem.clone()
    }

    fn bounds(&self) -> GuestBounds {
        GuestBounds {
            ranges: self.layout.user_ranges(),
            compartments: self.spec.all_names.len() as u32,
        }
    }

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
                VcpuExit::MmioRead(gpa, data) => CrashKind::Violation {
                    gpa,
                    len: data.len(),
                    write: false,
                    owner: None,
                },
                VcpuExit::MmioWrite(gpa, data) => CrashKind::Violation {
                    gpa,
                    len: data.len(),
                    write: true,
                    owner: None,
                },
                VcpuExit::Shutdown => CrashKind::TripleFault,
                VcpuExit::Hlt => CrashKind::UnexpectedExit("halted".into()),
                VcpuExit::FailEntry(reason, _) => {
                    return Outcome::Failed(VmmError::KvmRun(format!(
                        "KVM refused to enter the guest (hardware entry failure reason {reason:#x})"
                    )))
                }
                VcpuExit::InternalError => {
                    return Outcome::Failed(VmmError::KvmRun("KVM internal error".into()))
                }
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
                let cr2 = self.vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
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

    /// A crash: with a debugger attached the compartment first stops with the matching
    /// signal so GDB can inspect it; either way the run then ends with the report.
    fn fatal(
        &mut self,
        kind: CrashKind,
        frame: Option<(u64, ExceptionFrame)>,
        debug: Option<&Debugger>,
    ) -> Outcome {
        let signal = match &kind {
            CrashKind::Exception { vector, .. } => debug::exception_signal(*vector),
            CrashKind::Panic { .. } => Signal::SIGABRT,
            CrashKind::BadHypercall(_) | CrashKind::UnexpectedExit(_) => Signal::SIGSYS,
            CrashKind::Violation { .. } | CrashKind::TripleFault => Signal::SIGSEGV,
        };
        let outcome = self.crash(kind, frame.map(|f| f.1));
        if let Some(d) = debug.filter(|d| !d.is_detached()) {
            if let Ok(snap) = self.snapshot(frame) {
                let _ = d.park(
                    self.spec.id,
                    snap,
                    Some(StopKind::Signal(signal)),
                    Some(signal),
                );
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
            regs.rax = f.rax;
            regs.rdx = f.rdx;
            regs.rip = f.rip;
            regs.rsp = f.rsp;
            regs.rflags = f.rflags;
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

    /// Stops this compartment for GDB and, once resumed, puts back whatever GDB left in
    /// the snapshot (the frame for a trampoline stop, the vCPU otherwise), with TF set
    /// exactly when GDB asked for a single step.
    fn park(
        &mut self,
        d: &Debugger,
        frame: Option<(u64, ExceptionFrame)>,
        kind: Option<StopKind>,
    ) -> Result<()> {
        let snap = self.snapshot(frame)?;
        let (snap, action) = match d.park(self.spec.id, snap, kind, None) {
            Resumed::Run(snap, action) => (snap, action),
            Resumed::End => return Ok(()),
        };
        let tf = if action == Action::Step {
            cpu::RFLAGS_TF
        } else {
            0
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
                (f.rax, f.rdx, f.rip, f.rsp, f.rflags) = (r.rax, r.rdx, r.rip, r.rsp, rflags);
                self.mem
                    .write_obj(Pod(f), GuestAddress(at))
                    .map_err(|e| VmmError::Memory(format!("writing the exception frame: {e}")))?;
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

    /// Blocks until this compartment's doorbell rings or `timeout` passes, then clears
    /// the doorbell. A ring that came before the sleep returns at once.
    fn sleep(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.doorbell),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and we pass a
        // count of exactly one.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let _ = self.doorbell.read();
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
            regs.rax = f.rax;
            regs.rdx = f.rdx;
            regs.rip = f.rip;
            regs.rsp = f.rsp;
            regs.rflags = f.rflags;
        }
        if let CrashKind::Violation { gpa, owner, .. } = &mut kind {
            *owner = self
                .layout
                .plan
                .window_owner(*gpa)
                .map(|c| (c, self.spec.all_names[c as usize].clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_packs_arguments_after_the_block() {
        let shared = SharedRegion::new(2 << 20).unwrap();
        let plan = MemoryPlan::new(64 << 20, 0x10_1000, 2).unwrap();
        let mem = compartment_memory(&plan, 1, &shared).unwrap();
        let spec = CompartmentSpec {
            id: 1,
            name: "net".into(),
            components: vec![],
            assignment: vec![0, 1, 1],
            all_names: Arc::new(vec!["app".into(), "net".into()]),
            guest_args: vec!["a=1".into(), "".into(), "b c".into()],
            timings: true,
        };
        let layout = GuestLayout::new(plan, 1, vec![], 0x10_1000, 2 << 20);
        write_boot_info(&mem, &spec, &layout, 2_596_000, 42).unwrap();
        let info: Pod<BootInfo> = mem.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap();
        let info = info.0;
        assert_eq!(info.magic, flexos_abi::BOOT_MAGIC);
        assert_eq!((info.compartment_id, info.compartment_count), (1, 2));
        assert_eq!(info.name(), "net");
        assert_eq!(&info.placement[..3], &[0, 1, 1]);
        assert_eq!(info.stack_top, plan.data_window(1).end);
        let mut args = vec![0u8; info.args_len as usize];
        mem.read_slice(&mut args, GuestAddress(info.args_addr))
            .unwrap();
        assert_eq!(args, b"a=1\0\0b c\0");

        let mut bad = spec;
        bad.guest_args = vec!["x\0y".into()];
        assert!(write_boot_info(&mem, &bad, &layout, 0, 0).is_err());
        bad.guest_args = vec!["x".repeat(BOOT_INFO_SIZE as usize)];
        assert!(write_boot_info(&mem, &bad, &layout, 0, 0).is_err());
    }
}
