//! GDT, TSS and IDT for a compartment.
//!
//! Ring 3 runs the guest; ring 0 exists only so that exceptions have somewhere to land:
//! every exception vector points at a trampoline running on an IST stack, so even a
//! guest with a smashed stack reports cleanly.

use flexos_abi::{PORT_BASE, PORT_COUNT};
use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{GDT_ADDR, IDT_ADDR, IST1_TOP, IST2_TOP, TSS_ADDR};
use super::trampolines;
use crate::error::Result;
use crate::memory::MemoryError;

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
const TSS_LEN: usize = TSS_HEADER + IO_BITMAP_PORTS / 8 + 1;
pub const TSS_SIZE: u64 = TSS_LEN as u64;
/// One IDT gate per exception vector that has a trampoline (the guest takes no IRQs).
pub const IDT_ENTRIES: usize = trampolines::VECTORS;

const VEC_NMI: usize = 2;
const VEC_BP: usize = 3;
const VEC_DF: usize = 8;
const VEC_MC: usize = 18;

/// A flat (base 0, 4 GiB limit) code or data segment at ring `dpl`. The GDT entry is
/// encoded from it, and the vCPU's segment registers are decoded back from that entry,
/// so the two views cannot disagree.
#[derive(Clone, Copy)]
struct Flat {
    code: bool,
    dpl: u8,
}

impl Flat {
    fn descriptor(self) -> u64 {
        // Type: execute/read code or read/write data, with the accessed bit already set
        // (what the CPU would write on the first load).
        let type_: u64 = if self.code { 0xb } else { 0x3 };
        let access = 0x80 | (u64::from(self.dpl & 3) << 5) | 0x10 | type_; // P, DPL, S
                                                                           // G (4 KiB granules), and L for 64-bit code or D/B for data.
        let flags: u64 = 0x8 | if self.code { 0x2 } else { 0x4 };
        0xFFFF | (access << 40) | (0xF << 48) | (flags << 52)
    }
}

/// The GDT: null, then the segments below in selector order, then the TSS.
fn gdt() -> [u64; GDT_ENTRIES] {
    let flat = |code, dpl| Flat { code, dpl }.descriptor();
    let tss = tss_descriptor(TSS_ADDR, TSS_SIZE - 1);
    [
        0,
        flat(true, 0),  // KERNEL_CS
        flat(false, 0), // 0x10: kernel data, unused by the trampolines but conventional
        flat(false, 3), // USER_DS
        flat(true, 3),  // USER_CS
        tss[0],         // TSS_SEL
        tss[1],
    ]
}

/// The hidden part of a segment register as the CPU loads it from the GDT entry that
/// `selector` names; for the TSS (a 16-byte system descriptor) the base's high half
/// comes from the next slot.
pub fn segment_register(selector: u16) -> kvm_segment {
    let table = gdt();
    let index = usize::from(selector >> 3);
    let d = table[index];
    let bit = |n: u32| ((d >> n) & 1) as u8;
    let mut base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24);
    let s = bit(44);
    if s == 0 {
        base |= table[index + 1] << 32;
    }
    let raw_limit = (d & 0xFFFF) | (((d >> 48) & 0xF) << 16);
    let g = bit(55);
    let limit = if g == 1 {
        (raw_limit << 12) | 0xFFF
    } else {
        raw_limit
    };
    kvm_segment {
        base,
        limit: u32::try_from(limit).expect("a 20-bit limit in 4 KiB granules fits 32 bits"),
        selector,
        type_: ((d >> 40) & 0xF) as u8,
        s,
        dpl: ((d >> 45) & 3) as u8,
        present: bit(47),
        avl: bit(52),
        l: bit(53),
        db: bit(54),
        g,
        unusable: 0,
        padding: 0,
    }
}

/// A busy 64-bit TSS: the state `ltr` leaves in the GDT, which is the state the vCPU
/// starts in (TR already loaded).
fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
    let low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x8B << 40) // present, busy 64-bit TSS
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    [low, base >> 32]
}

fn idt_gate(handler: u64, ist: u8, dpl: u8) -> [u64; 2] {
    let low = (handler & 0xFFFF)
        | (u64::from(KERNEL_CS) << 16)
        | ((u64::from(ist) & 7) << 32)
        | ((0x8E | ((u64::from(dpl) & 3) << 5)) << 40) // present 64-bit interrupt gate
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
    let mut t = vec![0u8; TSS_LEN];
    t[4..12].copy_from_slice(&IST1_TOP.to_le_bytes());
    t[36..44].copy_from_slice(&IST1_TOP.to_le_bytes());
    t[44..52].copy_from_slice(&IST2_TOP.to_le_bytes());
    let bitmap_offset = u16::try_from(TSS_HEADER).expect("the TSS header is 104 bytes");
    t[102..104].copy_from_slice(&bitmap_offset.to_le_bytes());
    t[TSS_HEADER..].fill(0xff);
    for port in hypercall_port_span() {
        t[TSS_HEADER + port / 8] &= !(1 << (port % 8));
    }
    t
}

fn write_u64s(mem: &GuestMemoryMmap, addr: u64, words: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|source| {
            MemoryError::Write {
                what: "descriptor tables",
                addr,
                source,
            }
            .into()
        })
}

/// Writes GDT, TSS, IDT and trampolines into the VMM area.
pub fn install(mem: &GuestMemoryMmap) -> Result<()> {
    write_u64s(mem, GDT_ADDR, &gdt())?;

    mem.write_slice(&tss_bytes(), GuestAddress(TSS_ADDR))
        .map_err(|source| MemoryError::Write {
            what: "the TSS",
            addr: TSS_ADDR,
            source,
        })?;

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
        assert_eq!((lo >> 40) & 0xFF, 0x8B);
        assert_eq!(hi, 0x1234);
    }

    #[test]
    fn flat_segments_have_the_canonical_encodings() {
        // The usual long-mode GDT words (accessed bit set), as the SDM lays them out.
        let g = gdt();
        assert_eq!(g[usize::from(KERNEL_CS >> 3)], 0x00AF_9B00_0000_FFFF);
        assert_eq!(g[2], 0x00CF_9300_0000_FFFF);
        assert_eq!(g[usize::from(USER_DS >> 3)], 0x00CF_F300_0000_FFFF);
        assert_eq!(g[usize::from(USER_CS >> 3)], 0x00AF_FB00_0000_FFFF);
    }

    #[test]
    fn segment_registers_are_decoded_from_the_gdt() {
        let cs = segment_register(USER_CS);
        assert_eq!(
            (cs.base, cs.limit, cs.selector, cs.type_, cs.dpl),
            (0, 0xffff_ffff, USER_CS, 0xb, 3)
        );
        assert_eq!((cs.present, cs.s, cs.l, cs.db, cs.g), (1, 1, 1, 0, 1));
        let ds = segment_register(USER_DS);
        assert_eq!((ds.limit, ds.type_, ds.dpl), (0xffff_ffff, 0x3, 3));
        assert_eq!((ds.present, ds.s, ds.l, ds.db, ds.g), (1, 1, 0, 1, 1));
        let tr = segment_register(TSS_SEL);
        assert_eq!(
            (tr.base, u64::from(tr.limit), tr.type_, tr.s, tr.g),
            (TSS_ADDR, TSS_SIZE - 1, 0xb, 0, 0)
        );
        let kcs = segment_register(KERNEL_CS);
        assert_eq!((kcs.dpl, kcs.l, kcs.type_), (0, 1, 0xb));
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
