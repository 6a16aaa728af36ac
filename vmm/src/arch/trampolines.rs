//! Ring-0 exception trampolines, as machine code the monitor writes into the VMM area.
//!
//! Ring-0 code is emulated on kvm-pvm (~0.8 us an instruction), so the trampolines do
//! the least that works: push a uniform frame and hand its address to the monitor with
//! one `out`. The monitor reads the frame, reports the crash, or (for debugging) edits
//! the frame and resumes; the trampoline then unwinds and `iretq`s.
//!
//! Per vector (16-byte stride):   [push 0]  push vector  jmp common
//! common:   push rax; push rdx; mov rax, rsp; mov edx, PORT_EXCEPTION; out dx, eax;
//!           pop rdx; pop rax; add rsp, 16; iretq
//!
//! The resulting stack is exactly [`flexos_abi::ExceptionFrame`].

use flexos_abi::{ExceptionFrame, PORT_EXCEPTION};
use kvm_bindings::kvm_regs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::TRAMPOLINE_ADDR;
use crate::error::Result;
use crate::memory::MemoryError;

/// Exceptions are vectors 0..32, each with its own trampoline; nothing else is
/// delivered (the guest takes no IRQs). The IDT has exactly these entries.
pub const VECTORS: usize = 32;
const STRIDE: usize = 16;
const COMMON_ADDR: u64 = TRAMPOLINE_ADDR + (STRIDE * VECTORS) as u64;

/// Vectors for which the CPU pushes an error code.
pub fn has_error_code(vector: usize) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// Address of the trampoline for `vector`.
pub fn entry(vector: usize) -> u64 {
    TRAMPOLINE_ADDR + (STRIDE * vector) as u64
}

fn vector_stub(vector: usize) -> [u8; STRIDE] {
    let mut code = Vec::with_capacity(STRIDE);
    if !has_error_code(vector) {
        code.extend([0x6a, 0x00]); // push 0
    }
    let imm8 = u8::try_from(vector).expect("exception vectors are below 32");
    code.extend([0x6a, imm8]); // push imm8
    let jmp_end = entry(vector) + code.len() as u64 + 5;
    let rel = i32::try_from(i128::from(COMMON_ADDR) - i128::from(jmp_end))
        .expect("the common tail is a few hundred bytes away");
    code.push(0xe9); // jmp rel32
    code.extend(rel.to_le_bytes());
    let mut out = [0xcc; STRIDE]; // int3 padding
    out[..code.len()].copy_from_slice(&code);
    out
}

fn common() -> Vec<u8> {
    let mut c = vec![
        0x50, // push rax
        0x52, // push rdx
        0x48, 0x89, 0xe0, // mov rax, rsp
        0xba, // mov edx, imm32
    ];
    c.extend((PORT_EXCEPTION as u32).to_le_bytes());
    c.extend([
        0xef, // out dx, eax
        0x5a, // pop rdx
        0x58, // pop rax
        0x48, 0x83, 0xc4, 0x10, // add rsp, 16
        0x48, 0xcf, // iretq
    ]);
    c
}

/// Where `syscall` lands (MSR_LSTAR): an address in the supervisor-only VMM area with
/// no code. Guests make hypercalls, never system calls. On kvm-pvm a ring-3 `syscall`
/// jumps to LSTAR without leaving ring 3, so it faults fetching here and the monitor
/// can name it; on VT-x/SVM (EFER.SCE clear) it raises #UD at the instruction itself.
pub const SYSCALL_TRAP_ADDR: u64 = TRAMPOLINE_ADDR + 0x400;

/// The registers as the exception interrupted them, from the vCPU's registers inside a
/// trampoline and the frame it pushed: the trampoline saved RAX and RDX, the CPU pushed
/// RIP, RSP and RFLAGS; every other register still holds the interrupted value.
pub fn interrupted_regs(mut regs: kvm_regs, frame: &ExceptionFrame) -> kvm_regs {
    regs.rax = frame.rax;
    regs.rdx = frame.rdx;
    regs.rip = frame.rip;
    regs.rsp = frame.rsp;
    regs.rflags = frame.rflags;
    regs
}

/// The inverse of [`interrupted_regs`]: puts the frame's share of `regs` back into the
/// frame the trampoline restores from and `iretq`s through.
pub fn write_frame(frame: &mut ExceptionFrame, regs: &kvm_regs) {
    frame.rax = regs.rax;
    frame.rdx = regs.rdx;
    frame.rip = regs.rip;
    frame.rsp = regs.rsp;
    frame.rflags = regs.rflags;
}

/// Writes all trampolines into guest memory.
pub fn install(mem: &GuestMemoryMmap) -> Result<()> {
    let mut code = Vec::new();
    for v in 0..VECTORS {
        code.extend(vector_stub(v));
    }
    code.extend(common());
    assert!(TRAMPOLINE_ADDR + code.len() as u64 <= SYSCALL_TRAP_ADDR);
    mem.write_slice(&code, GuestAddress(TRAMPOLINE_ADDR))
        .map_err(|source| {
            MemoryError::Write {
                what: "the trampolines",
                addr: TRAMPOLINE_ADDR,
                source,
            }
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_jump_to_common() {
        for v in 0..VECTORS {
            let s = vector_stub(v);
            let at = if has_error_code(v) { 0 } else { 2 };
            assert_eq!(s[at], 0x6a);
            assert_eq!(s[at + 1] as usize, v);
            assert_eq!(s[at + 2], 0xe9);
            let rel = i32::from_le_bytes(s[at + 3..at + 7].try_into().unwrap());
            let next = entry(v) + at as u64 + 7;
            assert_eq!((next as i64 + rel as i64) as u64, COMMON_ADDR);
        }
    }

    #[test]
    fn frame_and_registers_round_trip() {
        let frame = ExceptionFrame {
            rax: 1,
            rdx: 2,
            rip: 3,
            rsp: 4,
            rflags: 5,
            ..Default::default()
        };
        let vcpu = kvm_regs {
            rax: 10,
            rbx: 11,
            rip: 12,
            ..Default::default()
        };
        let regs = interrupted_regs(vcpu, &frame);
        assert_eq!((regs.rax, regs.rdx, regs.rip, regs.rsp), (1, 2, 3, 4));
        assert_eq!((regs.rflags, regs.rbx), (5, 11));
        let mut back = ExceptionFrame::default();
        write_frame(&mut back, &regs);
        assert_eq!(
            (back.rax, back.rdx, back.rip, back.rsp, back.rflags),
            (1, 2, 3, 4, 5)
        );
    }

    #[test]
    fn common_reports_on_the_exception_port() {
        let c = common();
        assert_eq!(&c[6..10], &(PORT_EXCEPTION as u32).to_le_bytes());
        assert_eq!(&c[c.len() - 2..], &[0x48, 0xcf]);
    }
}
