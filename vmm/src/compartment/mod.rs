//! One compartment: a KVM VM with one vCPU, its private memory and the shared region,
//! booted straight into the image's entry point in ring 3.
//!
//! - this file: what a compartment is, and creating it;
//! - `boot_info`: the boot-info block the guest reads at its first instruction;
//! - `doorbell`: the eventfds compartments wake each other with;
//! - `devices`: attaching a device to the compartment that owns it;
//! - `run`: the vCPU loop that serves exits and hypercalls until the guest ends;
//! - `stop`: crashes (reports, backtraces) and debugger stops (snapshots, parking);
//! - `unemulated`: instructions KVM could not emulate, explained as violations.
//! - `hook`: the one interface a debugger implements to stop the loop.

mod boot_info;
mod devices;
mod doorbell;
mod hook;
mod run;
mod stop;
mod unemulated;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use flexos_abi::BOOT_INFO_ADDR;
use kvm_bindings::{kvm_msr_entry, kvm_userspace_memory_region, Msrs, KVM_MEM_READONLY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

pub use self::devices::Kicks;
pub use doorbell::Doorbells;
pub use hook::{Resume, Snapshot, Stop, StopHook};

use crate::arch::layout::{GuestLayout, MemoryPlan};
use crate::arch::{cpu, descriptors, paging};
use crate::console::Console;
use crate::error::{Result, VmmError};
use crate::escape;
use crate::hypercall::{GuestBounds, HypercallError};
use crate::image::Image;
use crate::memory::MemoryError;
use crate::memory::{compartment_memory, describe_shared, SharedRegion};
use crate::mmio::{MmioBus, Window};
use crate::report::{CrashKind, CrashReport};

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
    /// Every device window of the run (the owner's boot info lists its own; the others
    /// name a stray access in a report).
    pub windows: Arc<Vec<Window>>,
    /// Host CPUs this process may run on (0: unknown), for the guest's idle policy.
    pub host_cpus: u32,
    /// Guest spin rounds before sleeping, from the thread policy.
    pub spin_rounds: u32,
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
    /// KVM_CREATE_VM returned.
    pub vm: OnceLock<Instant>,
    /// Guest memory mapped (low region, data window, shared parts).
    pub memory: OnceLock<Instant>,
    /// The VM created and its memory slots registered.
    pub slots: OnceLock<Instant>,
    /// The vCPU created.
    pub vm_created: OnceLock<Instant>,
    /// The machine set up: image loaded, descriptor and page tables, registers, boot
    /// info.
    pub machine: OnceLock<Instant>,
    /// The first KVM_RUN about to start.
    pub first_entry: OnceLock<Instant>,
    /// The guest's `main` reported (its milestone hypercall).
    pub guest_main: OnceLock<Instant>,
}

impl Milestones {
    /// `(name, instant)` of each phase in order, for `--timings`.
    pub fn phases(&self) -> [(&'static str, Option<&Instant>); 7] {
        [
            ("vm_us", self.vm.get()),
            ("memory_us", self.memory.get()),
            ("slots_us", self.slots.get()),
            ("vm_created_us", self.vm_created.get()),
            ("machine_us", self.machine.get()),
            ("entry_us", self.first_entry.get()),
            ("guest_main_us", self.guest_main.get()),
        ]
    }
}

pub struct Compartment {
    pub spec: CompartmentSpec,
    // The VM must outlive its vCPU, memory slots and ioeventfds.
    vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    layout: GuestLayout,
    /// The shared region's layout, to name what a stray access touched.
    shared_layout: rpc_shm::Layout,
    console: Console,
    /// The devices this compartment owns, by MMIO window.
    mmio: MmioBus,
    doorbell: EventFd,
    /// Ring other compartments' doorbells when their ioeventfd did not catch the write.
    peers: Vec<EventFd>,
    pub milestones: Arc<Milestones>,
    /// The page tables' root, for the debugger's address translation.
    pub cr3: u64,
}

/// The guest's TSC frequency. Guest time is TSC ticks over this, so 0 (or no answer)
/// is an error rather than a silent "every time is 0".
fn tsc_khz(answer: std::result::Result<u32, kvm_ioctls::Error>) -> Result<u64> {
    match answer {
        Ok(0) => Err(VmmError::TscUnknown),
        Ok(khz) => Ok(u64::from(khz)),
        Err(source) => Err(VmmError::Kvm {
            what: "KVM_GET_TSC_KHZ",
            source,
        }),
    }
}

/// The vCPU's TSC now: the guest's time origin.
fn read_tsc(vcpu: &VcpuFd) -> Result<u64> {
    const WHAT: &str = "KVM_GET_MSRS";
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_TSC,
        ..Default::default()
    }])
    .map_err(|e| VmmError::MsrList {
        what: WHAT,
        detail: format!("{e:?}"),
    })?;
    match vcpu.get_msrs(&mut msrs).map_err(VmmError::kvm(WHAT))? {
        1 => Ok(msrs.as_slice()[0].data),
        done => Err(VmmError::MsrCount {
            what: WHAT,
            done,
            want: 1,
        }),
    }
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
        let milestones = Arc::new(Milestones::default());
        let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
        let _ = milestones.vm.set(Instant::now());
        let mem = compartment_memory(plan, spec.id, shared)?;
        let _ = milestones.memory.set(Instant::now());
        let readonly: Vec<_> = shared
            .mappings(spec.id)
            .into_iter()
            .filter(|m| !m.writable)
            .map(|m| m.gpa)
            .collect();
        let readonly_slots = kvm.check_extension(kvm_ioctls::Cap::ReadonlyMem);
        for (slot, region) in (0u32..).zip(mem.iter()) {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(MemoryError::HostAddress)?;
            let gpa = region.start_addr().0;
            // Read-only shared pages are also read-only in the page tables, which ring-3
            // code cannot change; the slot flag is the second wall (a write that got
            // past the page tables would exit as MMIO and be reported).
            let flags = if readonly_slots && readonly.iter().any(|r| r.start == gpa) {
                KVM_MEM_READONLY
            } else {
                0
            };
            let region_desc = kvm_userspace_memory_region {
                slot,
                flags,
                guest_phys_addr: gpa,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mapping owned by `mem`, which this compartment
            // keeps for as long as the VM exists; KVM only accesses it on the guest's behalf.
            unsafe { vm.set_user_memory_region(region_desc) }
                .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        tracing::debug!(
            compartment = spec.id,
            memory_slots = mem.num_regions(),
            readonly_slots,
            "memory slots registered"
        );
        // A lone compartment has nobody to ring, and each VM with an ioeventfd costs
        // ~10 ms more to destroy on this host (measured), so bind only when useful; the
        // userspace fallback in `serve` still answers a stray doorbell.
        if spec.all_names.len() > 1 {
            doorbells.bind(&vm)?;
        }
        let _ = milestones.slots.set(Instant::now());
        let vcpu = vm
            .create_vcpu(0)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let _ = milestones.vm_created.set(Instant::now());

        let layout = GuestLayout::new(
            *plan,
            spec.id,
            image.segments.clone(),
            image.end,
            shared.mappings(spec.id),
            shared.size(),
        );
        image.load(&mem).map_err(MemoryError::from)?;
        descriptors::install(&mem)?;
        let cr3 = paging::build(&mem, &layout)?;
        cpu::setup_cpuid(kvm, &vcpu)?;
        cpu::setup_sregs(&vcpu, cr3)?;
        cpu::setup_fpu(&vcpu)?;
        cpu::setup_syscall_msrs(&vcpu)?;
        cpu::setup_regs(&vcpu, image.entry, layout.stack_top, BOOT_INFO_ADDR)?;

        let tsc_khz = tsc_khz(vcpu.get_tsc_khz())?;
        let tsc_now = read_tsc(&vcpu)?;
        boot_info::write(&mem, &spec, &layout, tsc_khz, tsc_now)?;
        let _ = milestones.machine.set(Instant::now());

        // Names may come from the image: shown escaped, like guest text.
        let name = escape::line(&spec.name);
        let prefix = (spec.all_names.len() > 1).then(|| format!("[{name}] "));
        let doorbell = doorbells.own(spec.id)?;
        let peers = (0u32..)
            .zip(spec.all_names.iter())
            .map(|(id, _)| doorbells.own(id))
            .collect::<Result<Vec<_>>>()?;
        Ok(Compartment {
            spec,
            vm,
            vcpu,
            mem,
            layout,
            shared_layout: *shared.layout(),
            console: Console::new(prefix),
            mmio: MmioBus::default(),
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

    /// Whose memory guest-physical `gpa` is, in words for a report: another
    /// compartment's private memory, or a part of the shared region.
    fn describe_gpa(&self, gpa: u64) -> Option<String> {
        if let Some(w) = self.spec.windows.iter().find(|w| w.range.contains(&gpa)) {
            return Some(w.describe(&self.spec.all_names));
        }
        if let Some(c) = self.layout.plan.window_owner(gpa) {
            let name = &self.spec.all_names[c as usize];
            return Some(format!("private memory of compartment {c} ({name})"));
        }
        describe_shared(&self.shared_layout, gpa, &self.spec.all_names)
    }

    /// A refused hypercall whose block or buffer reaches memory that is someone else's
    /// (another pair's channel, another compartment's private memory) is an isolation
    /// violation naming it, as a direct access there would be.
    fn hypercall_violation(&self, kind: &CrashKind) -> Option<CrashKind> {
        let CrashKind::BadHypercall(e) = kind else {
            return None;
        };
        let (what, addr, len) = match *e {
            HypercallError::BufferOutside { what, addr, len }
            | HypercallError::BufferUnreadable {
                what, addr, len, ..
            } => (format!("{what} buffer"), addr, len),
            HypercallError::BlockOutside { what, gpa }
            | HypercallError::BlockUnreadable { what, gpa, .. } => {
                (format!("{what} argument block"), gpa, 1)
            }
            _ => return None,
        };
        // The first byte the compartment cannot reach (page by page: memory is mapped
        // in whole pages).
        let end = addr.saturating_add(len.max(1));
        let mut at = addr;
        let gpa = loop {
            if at >= end {
                return None;
            }
            if self.mem.find_region(GuestAddress(at)).is_none() {
                break at;
            }
            at = (at | 0xfff).saturating_add(1);
        };
        let owner = self.describe_gpa(gpa)?;
        Some(CrashKind::HypercallViolation {
            what,
            addr,
            len,
            gpa,
            owner,
        })
    }

    /// A page fault that is a ring-3 write to a shared page this compartment may only
    /// read (the header, dead flags, a peer's state page) is an isolation violation,
    /// not a bug of its own: the page tables made it read-only on purpose.
    fn readonly_write(&self, kind: &CrashKind) -> Option<CrashKind> {
        const PF_PRESENT_USER_WRITE: u64 = 0x1 | 0x2 | 0x4;
        match *kind {
            CrashKind::Exception {
                vector: 14,
                error_code,
                cr2,
            } if error_code & PF_PRESENT_USER_WRITE == PF_PRESENT_USER_WRITE
                && self
                    .layout
                    .shared_maps
                    .iter()
                    .any(|m| !m.writable && m.gpa.contains(&cr2)) =>
            {
                Some(CrashKind::Violation {
                    gpa: cr2,
                    len: 0,
                    write: true,
                    owner: None,
                })
            }
            _ => None,
        }
    }

    fn bounds(&self) -> GuestBounds {
        GuestBounds {
            ranges: self.layout.user_ranges(),
            compartments: u32::try_from(self.spec.all_names.len())
                .expect("a run has at most MAX_COMPARTMENTS compartments"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tsc_frequency_of_zero_is_an_error() {
        assert!(matches!(tsc_khz(Ok(0)), Err(VmmError::TscUnknown)));
        assert_eq!(tsc_khz(Ok(2_596_000)).unwrap(), 2_596_000);
        let e = tsc_khz(Err(kvm_ioctls::Error::new(libc::ENOTTY))).unwrap_err();
        assert!(
            e.to_string().starts_with("KVM KVM_GET_TSC_KHZ failed"),
            "{e}"
        );
    }
}
