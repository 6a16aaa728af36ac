//! One compartment: a KVM VM with one vCPU, its private memory and the shared region,
//! booted straight into the image's entry point in ring 3, and the loop that serves its
//! exits until it exits, crashes or violates isolation.

use std::time::Instant;

use flexos_abi::{
    BootInfo, BOOT_FLAG_TIMINGS, BOOT_INFO_ADDR, BOOT_INFO_SIZE, NAME_LEN, PORT_EXCEPTION,
    SHARED_BASE,
};
use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_userspace_memory_region, Msrs};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::layout::GuestLayout;
use crate::arch::{cpu, descriptors, paging};
use crate::console::Console;
use crate::error::{Result, VmmError};
use crate::hypercall::{self, GuestBounds, Hypercall};
use crate::image::Image;
use crate::memory::{compartment_memory, SharedRegion};
use crate::report::{AddressMap, CrashKind, CrashReport, MAX_FRAMES};

const MSR_IA32_TSC: u32 = 0x10;

/// What a compartment is asked to be.
pub struct CompartmentSpec {
    pub id: u32,
    pub count: u32,
    pub name: String,
    pub components: Vec<String>,
    pub mem_size: u64,
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

/// Moments in a compartment's life, for `--timings`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Milestones {
    pub vm_created: Option<Instant>,
    pub guest_main: Option<Instant>,
}

pub struct Compartment {
    pub spec: CompartmentSpec,
    // The VM must outlive its vCPU and memory slots.
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    layout: GuestLayout,
    console: Console,
    pub milestones: Milestones,
}

/// Packs the boot-info block and the guest arguments into the boot-info window.
fn boot_info_bytes(
    spec: &CompartmentSpec,
    layout: &GuestLayout,
    tsc_khz: u64,
    tsc_now: u64,
) -> Result<Vec<u8>> {
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
    info.compartment_count = spec.count;
    let name = spec.name.as_bytes();
    info.compartment_name[..name.len().min(NAME_LEN)]
        .copy_from_slice(&name[..name.len().min(NAME_LEN)]);
    info.mem_size = layout.mem_size;
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

    let mut bytes = vec![0u8; header as usize];
    // SAFETY: BootInfo is repr(C) plain data with no padding holes that matter (its size
    // is pinned by the abi tests); viewing it as bytes of exactly its size is sound.
    let raw = unsafe {
        std::slice::from_raw_parts((&info as *const BootInfo).cast::<u8>(), header as usize)
    };
    bytes.copy_from_slice(raw);
    bytes.extend(args);
    Ok(bytes)
}

impl Compartment {
    /// Creates the VM, its memory and vCPU, loads the image and sets up the machine
    /// state for the first instruction. Nothing runs yet.
    pub fn create(
        kvm: &Kvm,
        spec: CompartmentSpec,
        image: &Image,
        shared: &SharedRegion,
    ) -> Result<Compartment> {
        let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
        let mem = compartment_memory(spec.mem_size, shared)?;
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
        let vcpu = vm
            .create_vcpu(0)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let milestones = Milestones {
            vm_created: Some(Instant::now()),
            ..Default::default()
        };

        let layout = GuestLayout::new(
            spec.mem_size,
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
        let info = boot_info_bytes(&spec, &layout, tsc_khz, tsc_now)?;
        mem.write_slice(&info, GuestAddress(BOOT_INFO_ADDR))
            .map_err(|e| VmmError::Memory(format!("writing boot info: {e}")))?;

        let prefix = (spec.count > 1).then(|| format!("[{}] ", spec.name));
        Ok(Compartment {
            spec,
            _vm: vm,
            vcpu,
            mem,
            layout,
            console: Console::new(prefix),
            milestones,
        })
    }

    fn bounds(&self) -> GuestBounds {
        GuestBounds {
            mem_size: self.layout.mem_size,
            shared_size: self.layout.shared_size,
        }
    }

    /// Runs the vCPU until the guest exits or crashes.
    pub fn run(&mut self) -> Outcome {
        loop {
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
                    // Only exception reports need the privilege level (one more ioctl).
                    let cpl = if port == PORT_EXCEPTION {
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
                    match hypercall::decode(&self.mem, self.bounds(), port, &value[..len], cpl) {
                        Ok(hc) => match self.serve(hc) {
                            Some(outcome) => return outcome,
                            None => continue,
                        },
                        Err(why) => CrashKind::BadHypercall(why),
                    }
                }
                VcpuExit::IoIn(port, _) => CrashKind::UnexpectedExit(format!("read from I/O port {port:#x}, which no device owns")),
                VcpuExit::MmioRead(gpa, data) => CrashKind::Violation { gpa, len: data.len(), write: false },
                VcpuExit::MmioWrite(gpa, data) => CrashKind::Violation { gpa, len: data.len(), write: true },
                VcpuExit::Shutdown => CrashKind::TripleFault,
                VcpuExit::Hlt => CrashKind::UnexpectedExit("halted".into()),
                VcpuExit::FailEntry(reason, _) => {
                    return Outcome::Failed(VmmError::KvmRun(format!("KVM refused to enter the guest (hardware entry failure reason {reason:#x})")))
                }
                VcpuExit::InternalError => {
                    return Outcome::Failed(VmmError::KvmRun("KVM internal error".into()))
                }
                other => CrashKind::UnexpectedExit(format!("unexpected VM exit {other:?}")),
            };
            return self.crash(event, None);
        }
    }

    /// Serves one valid hypercall; returns an outcome when the run ends.
    fn serve(&mut self, hc: Hypercall) -> Option<Outcome> {
        match hc {
            Hypercall::Console(bytes) => {
                self.console.write(&bytes);
                None
            }
            Hypercall::MainReached => {
                self.milestones.guest_main.get_or_insert_with(Instant::now);
                None
            }
            Hypercall::Exit(code) => Some(Outcome::Exited(code)),
            Hypercall::Panic {
                message,
                file,
                line,
                column,
            } => Some(self.crash(
                CrashKind::Panic {
                    message,
                    file,
                    line,
                    column,
                },
                None,
            )),
            Hypercall::Exception(frame) => {
                let cr2 = self.vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
                Some(self.crash(
                    CrashKind::Exception {
                        vector: frame.vector,
                        error_code: frame.error_code,
                        cr2,
                    },
                    Some(frame),
                ))
            }
        }
    }

    /// Collects a crash report. `frame` is the interrupted state for exceptions; other
    /// crashes use the vCPU registers as they are.
    fn crash(&mut self, kind: CrashKind, frame: Option<flexos_abi::ExceptionFrame>) -> Outcome {
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

    /// Follows the frame-pointer chain from `rbp`; stops at a null, misaligned,
    /// non-increasing or out-of-memory frame pointer (the guest's stack is untrusted).
    fn backtrace(&self, rip: u64, mut rbp: u64) -> (Vec<u64>, bool) {
        let mut pcs = vec![rip];
        while pcs.len() < MAX_FRAMES {
            if rbp == 0
                || !rbp.is_multiple_of(8)
                || rbp < flexos_abi::IMAGE_BASE
                || rbp + 16 > self.layout.mem_size
            {
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
        let spec = CompartmentSpec {
            id: 1,
            count: 2,
            name: "net".into(),
            components: vec![],
            mem_size: 64 << 20,
            guest_args: vec!["a=1".into(), "".into(), "b c".into()],
            timings: true,
        };
        let layout = GuestLayout::new(64 << 20, vec![], 0x20_0000, 16 << 20);
        let bytes = boot_info_bytes(&spec, &layout, 2_596_000, 42).unwrap();
        let hdr = std::mem::size_of::<BootInfo>();
        assert_eq!(&bytes[hdr..], b"a=1\0\0b c\0");
        assert_eq!(
            u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            flexos_abi::BOOT_MAGIC
        );

        let mut bad = spec;
        bad.guest_args = vec!["x\0y".into()];
        assert!(boot_info_bytes(&bad, &layout, 0, 0).is_err());
        bad.guest_args = vec!["x".repeat(BOOT_INFO_SIZE as usize)];
        assert!(boot_info_bytes(&bad, &layout, 0, 0).is_err());
    }
}
