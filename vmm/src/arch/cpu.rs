//! Initial vCPU state: 64-bit long mode, already in ring 3.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::{Kvm, VcpuFd};

use super::descriptors::{
    segment_register, GDT_ENTRIES, IDT_ENTRIES, KERNEL_CS, TSS_SEL, USER_CS, USER_DS,
};
use super::layout::{GDT_ADDR, IDT_ADDR};
use super::trampolines::SYSCALL_TRAP_ADDR;
use crate::error::{Result, VmmError};

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// Bit 1 is reserved-set. IOPL stays 0: the TSS I/O bitmap grants the hypercall ports
/// (see `descriptors`), so ring 3 can neither `cli` nor touch any other port.
pub const RFLAGS_INIT: u64 = 1 << 1;
/// Trap flag: a #DB after the next instruction (the debugger's single step).
pub const RFLAGS_TF: u64 = 1 << 8;
const MXCSR_DEFAULT: u32 = 0x1f80;
const FCW_DEFAULT: u16 = 0x37f;

/// Gives the vCPU what KVM supports of CPUID (needed for long mode and NX).
pub fn setup_cpuid(kvm: &Kvm, vcpu: &VcpuFd) -> Result<()> {
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    vcpu.set_cpuid2(&cpuid)
        .map_err(VmmError::kvm("KVM_SET_CPUID2"))
}

/// Sets control registers, segments and descriptor tables for ring 3 in long mode.
pub fn setup_sregs(vcpu: &VcpuFd, cr3: u64) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
    sregs.cs = segment_register(USER_CS);
    let data = segment_register(USER_DS);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_register(TSS_SEL);
    sregs.ldt = kvm_segment {
        type_: 0x2,
        present: 1,
        unusable: 1,
        ..Default::default()
    };
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = u16::try_from(GDT_ENTRIES * 8 - 1).expect("the GDT is 56 bytes");
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = u16::try_from(IDT_ENTRIES * 16 - 1).expect("the IDT is 512 bytes");
    vcpu.set_sregs(&sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))
}

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_SFMASK: u32 = 0xc000_0084;

/// Points `syscall` at [`SYSCALL_TRAP_ADDR`], so a guest that executes it gets a report
/// that says so (left at 0, kvm-pvm's jump to LSTAR looked like a null dereference).
pub fn setup_syscall_msrs(vcpu: &VcpuFd) -> Result<()> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    let msrs = Msrs::from_entries(&[
        entry(MSR_STAR, (KERNEL_CS as u64) << 32),
        entry(MSR_LSTAR, SYSCALL_TRAP_ADDR),
        // Clear IF, TF, DF and AC on entry, like any kernel would.
        entry(MSR_SFMASK, 0x4_0700),
    ])
    .map_err(|e| VmmError::MsrList {
        what: "KVM_SET_MSRS",
        detail: format!("{e:?}"),
    })?;
    match vcpu.set_msrs(&msrs) {
        Ok(3) => Ok(()),
        Ok(done) => Err(VmmError::MsrCount {
            what: "KVM_SET_MSRS",
            done,
            want: 3,
        }),
        Err(e) => Err(VmmError::Kvm {
            what: "KVM_SET_MSRS",
            source: e,
        }),
    }
}

/// Sets RIP, RSP, RDI (boot info) and RFLAGS for the first instruction.
pub fn setup_regs(vcpu: &VcpuFd, entry: u64, stack_top: u64, boot_info: u64) -> Result<()> {
    let regs = kvm_regs {
        rip: entry,
        // As if `_start` had been called: RSP = 8 mod 16 at function entry.
        rsp: stack_top - 8,
        rdi: boot_info,
        rflags: RFLAGS_INIT,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(VmmError::kvm("KVM_SET_REGS"))
}

/// x87 and SSE control words at their power-on defaults (all exceptions masked).
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: FCW_DEFAULT,
        mxcsr: MXCSR_DEFAULT,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(VmmError::kvm("KVM_SET_FPU"))
}
