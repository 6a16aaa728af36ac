//! One compartment: a KVM VM with one vCPU, its private memory and the shared region,
//! booted straight into the image's entry point in ring 3.
//!
//! - this file: what a compartment is, and creating it;
//! - `boot_info`: the boot-info block the guest reads at its first instruction;
//! - `doorbell`: the eventfds compartments wake each other with;
//! - `run`: the vCPU loop that serves exits and hypercalls until the guest ends;
//! - `stop`: crashes (reports, backtraces) and debugger stops (snapshots, parking);
//! - `hook`: the one interface a debugger implements to stop the loop.

mod boot_info;
mod doorbell;
mod hook;
mod run;
mod stop;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use flexos_abi::BOOT_INFO_ADDR;
use kvm_bindings::{kvm_msr_entry, kvm_userspace_memory_region, Msrs};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

pub use doorbell::Doorbells;
pub use hook::{Resume, Snapshot, Stop, StopHook};

use crate::arch::layout::{GuestLayout, MemoryPlan};
use crate::arch::{cpu, descriptors, paging};
use crate::console::Console;
use crate::error::{Result, VmmError};
use crate::hypercall::GuestBounds;
use crate::image::Image;
use crate::memory::{compartment_memory, SharedRegion};
use crate::report::CrashReport;

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
        cpu::setup_syscall_msrs(&vcpu)?;
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
        boot_info::write(&mem, &spec, &layout, tsc_khz, tsc_now)?;

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
}
