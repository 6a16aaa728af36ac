//! GDT, TSS and IDT for a compartment.
//!
//! Ring 3 runs the guest; ring 0 exists only so that exceptions have somewhere to land:
//! every exception vector points at a trampoline running on an IST stack, so even a
//! guest with a smashed stack reports cleanly.

use flexos_abi::{PORT_BASE, PORT_COUNT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{GDT_ADDR, IDT_ADDR, IST1_TOP, IST2_TOP, TSS_ADDR};
use super::trampolines;
use crate::error::{Result, VmmError};

pub const KERNEL_CS: u16 = 0x08;
/// User data selector (RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// User 64-bit code selector (RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
pub const TSS_SEL: u16 = 0x28;
/// GDT slots, the TSS descriptor taking two.
pub const GDT_ENTRIES: usize = 7;
/// The TSS proper, then an I/O permission bitmap for ports 0..IO_BITMAP_PORTS and the
/// 0xFF byte the CPU requires after it.
const TSS_HEADER: usize = 104;
const IO_BITMAP_PORTS: usize = 0x1000;
pub const TSS_SIZE: u64 = (TSS_HEADER + IO_BITMAP_PORTS / 8 + 1) as u64;
/// Exceptions are vectors 0..32; nothing else is delivered (the guest takes no IRQs).
pub const IDT_ENTRIES: usize = 32;

/// Flat segment descriptors: present, S=1, 4 GiB limit, G=1.
const KERNEL_CODE64: u64 = 0x00AF_9A00_0000_FFFF;
/// Slot 2 (0x10): kernel data, unused by the trampolines but kept for a conventional GDT.
const KERNEL_DATA: u64 = 0x00CF_9200_0000_FFFF;
const USER_DATA: u64 = 0x00CF_F200_0000_FFFF;
const USER_CODE64: u64 = 0x00AF_FA00_0000_FFFF;

const VEC_NMI: usize = 2;
const VEC_BP: usize = 3;
const VEC_DF: usize = 8;
const VEC_MC: usize = 18;

fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
    let low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x89 << 40) // present, available 64-bit TSS
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    [low, base >> 32]
}

fn idt_gate(handler: u64, ist: u8, dpl: u8) -> [u64; 2] {
    let low = (handler & 0xFFFF)
        | ((KERNEL_CS as u64) << 16)
        | ((ist as u64 & 7) << 32)
        | ((0x8E | ((dpl as u64 & 3) << 5)) << 40) // present 64-bit interrupt gate
        | (((handler >> 16) & 0xFFFF) << 48);
    [low, handler >> 32]
}

/// Ports ring 3 may use: a 32-bit `out` to port P is checked against bits P..P+3.
fn hypercall_port_span() -> std::ops::Range<usize> {
    PORT_BASE as usize..(PORT_BASE + PORT_COUNT) as usize + 3
}

/// TSS: RSP0 at offset 4, IST1/IST2 at 36/44, and an I/O bitmap that opens exactly the
/// hypercall ports to ring 3. (kvm-pvm ignores RFLAGS.IOPL for ring 3 but honours the
/// bitmap, which is also the tighter grant: every other port still raises #GP.)
fn tss_bytes() -> Vec<u8> {
    let mut t = vec![0u8; TSS_SIZE as usize];
    t[4..12].copy_from_slice(&IST1_TOP.to_le_bytes());
    t[36..44].copy_from_slice(&IST1_TOP.to_le_bytes());
    t[44..52].copy_from_slice(&IST2_TOP.to_le_bytes());
    t[102..104].copy_from_slice(&(TSS_HEADER as u16).to_le_bytes());
    t[TSS_HEADER..].fill(0xff);
    for port in hypercall_port_span() {
        t[TSS_HEADER + port / 8] &= !(1 << (port % 8));
    }
    t
}

fn write_u64s(mem: &GuestMemoryMmap, addr: u64, words: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|e| VmmError::Memory(format!("writing descriptor tables at {addr:#x}: {e}")))
}

/// Writes GDT, TSS, IDT and trampolines into the VMM area.
pub fn install(mem: &GuestMemoryMmap) -> Result<()> {
    let tss = tss_descriptor(TSS_ADDR, TSS_SIZE - 1);
    let gdt = [
        0,
        KERNEL_CODE64,
        KERNEL_DATA,
        USER_DATA,
        USER_CODE64,
        tss[0],
        tss[1],
    ];
    write_u64s(mem, GDT_ADDR, &gdt)?;

    mem.write_slice(&tss_bytes(), GuestAddress(TSS_ADDR))
        .map_err(|e| VmmError::Memory(format!("writing TSS: {e}")))?;

    let mut idt = Vec::with_capacity(IDT_ENTRIES * 2);
    for vector in 0..IDT_ENTRIES {
        let ist = if matches!(vector, VEC_NMI | VEC_DF | VEC_MC) {
            2
        } else {
            1
        };
        // int3 is an instruction the guest may execute (breakpoints), so its gate must be
        // reachable from ring 3; every other vector only by the CPU itself.
        let dpl = if vector == VEC_BP { 3 } else { 0 };
        idt.extend(idt_gate(trampolines::entry(vector), ist, dpl));
    }
    write_u64s(mem, IDT_ADDR, &idt)?;
    trampolines::install(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_descriptor_encodes_base_and_limit() {
        let [lo, hi] = tss_descriptor(0x1234_5678_9abc, 0x67);
        assert_eq!(lo & 0xFFFF, 0x67);
        assert_eq!((lo >> 16) & 0xFF_FFFF, 0x56_789abc & 0xFF_FFFF);
        assert_eq!((lo >> 40) & 0xFF, 0x89);
        assert_eq!(hi, 0x1234);
    }

    #[test]
    fn io_bitmap_opens_only_hypercall_ports() {
        let t = tss_bytes();
        let allowed = |port: usize| t[TSS_HEADER + port / 8] & (1 << (port % 8)) == 0;
        for port in 0..IO_BITMAP_PORTS {
            let hypercall = hypercall_port_span().contains(&port);
            assert_eq!(allowed(port), hypercall, "port {port:#x}");
        }
        assert_eq!(*t.last().unwrap(), 0xff);
        assert!(allowed(PORT_BASE as usize + PORT_COUNT as usize + 2));
        assert!(!allowed(PORT_BASE as usize - 1));
    }

    #[test]
    fn idt_gate_points_at_handler() {
        let [lo, hi] = idt_gate(0x3010, 1, 3);
        assert_eq!(lo & 0xFFFF, 0x3010);
        assert_eq!((lo >> 16) & 0xFFFF, KERNEL_CS as u64);
        assert_eq!((lo >> 32) & 7, 1);
        assert_eq!((lo >> 40) & 0xFF, 0xEE);
        assert_eq!(hi, 0);
    }
}
