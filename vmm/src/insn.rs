//! Just enough x86-64 instruction decoding to say where an instruction's memory operand
//! points, for reports of instructions KVM could not emulate (SSE, x87, AES-NI... on
//! memory the guest does not own).
//!
//! Handles legacy prefixes (segment overrides FS/GS, address size), REX, two- and
//! three-byte VEX, the 0F, 0F38 and 0F3A opcode maps, the x87 escapes D8-DF, ModRM, SIB,
//! displacements and RIP-relative addressing. Anything else decodes to `None`: the
//! report then shows the instruction bytes without an address.

use kvm_bindings::kvm_regs;

/// The longest x86 instruction.
pub const MAX_LEN: usize = 15;

/// Where a memory operand points, before the registers are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MemOperand {
    /// Register numbers 0..16 (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15).
    base: Option<u8>,
    index: Option<(u8, u8)>,
    disp: i64,
    /// RIP-relative: relative to the end of the instruction, `len` bytes from its start.
    rip_relative: bool,
    len: usize,
    /// An FS (true) or GS (false) segment override.
    segment: Option<bool>,
    addr32: bool,
}

/// Opcodes of the 0F map without a ModRM byte (system, branches, bswap...).
fn map0f_has_modrm(op: u8) -> bool {
    !matches!(op,
        0x05..=0x09 | 0x0b | 0x0e | 0x30..=0x37 | 0x77 | 0x80..=0x8f
        | 0xa0..=0xa2 | 0xa8..=0xaa | 0xc8..=0xcf)
}

/// Immediate bytes after the ModRM operand in the 0F map.
fn map0f_imm(op: u8) -> usize {
    match op {
        0x70..=0x73 | 0xa4 | 0xac | 0xba | 0xc2 | 0xc4..=0xc6 => 1,
        _ => 0,
    }
}

fn decode(bytes: &[u8]) -> Option<MemOperand> {
    let mut i = 0;
    let mut segment = None;
    let mut addr32 = false;
    let byte = |i: usize| bytes.get(i).copied();
    // Legacy prefixes.
    loop {
        match byte(i)? {
            0x64 => segment = Some(true),
            0x65 => segment = Some(false),
            0x67 => addr32 = true,
            0x66 | 0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e => {}
            _ => break,
        }
        i += 1;
    }
    let (mut rex_x, mut rex_b) = (false, false);
    let (map, op) = match byte(i)? {
        rex @ 0x40..=0x4f => {
            rex_x = rex & 2 != 0;
            rex_b = rex & 1 != 0;
            i += 1;
            opcode(bytes, &mut i)?
        }
        // Two-byte VEX: map 0F; REX.X and REX.B are implied clear.
        0xc5 => {
            i += 2;
            let op = byte(i)?;
            i += 1;
            (1, op)
        }
        // Three-byte VEX: inverted R, X, B and the map in the first payload byte.
        0xc4 => {
            let p = byte(i + 1)?;
            rex_x = p & 0x40 == 0;
            rex_b = p & 0x20 == 0;
            let map = match p & 0x1f {
                m @ 1..=3 => m,
                _ => return None,
            };
            i += 3;
            let op = byte(i)?;
            i += 1;
            (map, op)
        }
        _ => opcode(bytes, &mut i)?,
    };
    let imm = match (map, op) {
        (0, 0xd8..=0xdf) => 0,
        (0, _) => return None,
        (1, op) if map0f_has_modrm(op) => map0f_imm(op),
        (1, _) => return None,
        (2, _) => 0,
        (3, _) => 1,
        _ => return None,
    };
    let modrm = byte(i)?;
    i += 1;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return None; // a register operand
    }
    let mut operand = MemOperand {
        base: None,
        index: None,
        disp: 0,
        rip_relative: false,
        len: 0,
        segment,
        addr32,
    };
    let mut disp_len = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = byte(i)?;
        i += 1;
        let (scale, index, base) = (sib >> 6, (sib >> 3) & 7 | u8::from(rex_x) << 3, sib & 7);
        if index != 4 {
            operand.index = Some((index, 1 << scale));
        }
        if base == 5 && md == 0 {
            disp_len = 4;
        } else {
            operand.base = Some(base | u8::from(rex_b) << 3);
        }
    } else if rm == 5 && md == 0 {
        operand.rip_relative = true;
        disp_len = 4;
    } else {
        operand.base = Some(rm | u8::from(rex_b) << 3);
    }
    operand.disp = match disp_len {
        1 => i64::from(byte(i)? as i8),
        4 => i64::from(i32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?)),
        _ => 0,
    };
    operand.len = i + disp_len + imm;
    // The bytes must hold the whole instruction, immediates included.
    (operand.len <= MAX_LEN.min(bytes.len())).then_some(operand)
}

/// Reads the opcode at `*i`: (map, byte) with map 0 = one-byte, 1 = 0F, 2 = 0F38, 3 = 0F3A.
fn opcode(bytes: &[u8], i: &mut usize) -> Option<(u8, u8)> {
    let first = *bytes.get(*i)?;
    *i += 1;
    if first != 0x0f {
        return Some((0, first));
    }
    let second = *bytes.get(*i)?;
    *i += 1;
    let map = match second {
        0x38 => 2,
        0x3a => 3,
        op => return Some((1, op)),
    };
    let op = *bytes.get(*i)?;
    *i += 1;
    Some((map, op))
}

fn reg(regs: &kvm_regs, n: u8) -> u64 {
    let all = [
        regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi, regs.r8,
        regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
    ];
    all[usize::from(n & 15)]
}

/// The linear address the memory operand of the instruction `bytes` (at `regs.rip`)
/// points to, and the instruction's length; `None` if it has no memory operand or is not
/// decoded here. `fs_base` and `gs_base` apply to segment-overridden operands.
pub fn operand_address(
    bytes: &[u8],
    regs: &kvm_regs,
    fs_base: u64,
    gs_base: u64,
) -> Option<(u64, usize)> {
    let op = decode(bytes)?;
    let mut addr = op.disp as u64;
    if op.rip_relative {
        addr = addr.wrapping_add(regs.rip.wrapping_add(op.len as u64));
    }
    if let Some(base) = op.base {
        addr = addr.wrapping_add(reg(regs, base));
    }
    if let Some((index, scale)) = op.index {
        addr = addr.wrapping_add(reg(regs, index).wrapping_mul(u64::from(scale)));
    }
    if op.addr32 {
        addr &= 0xffff_ffff;
    }
    match op.segment {
        Some(true) => addr = addr.wrapping_add(fs_base),
        Some(false) => addr = addr.wrapping_add(gs_base),
        None => {}
    }
    Some((addr, op.len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> kvm_regs {
        kvm_regs {
            rax: 0x4200000,
            rbx: 0x1000,
            rcx: 3,
            rsi: 0x10,
            r8: 0x500000,
            r13: 0x7000,
            rip: 0x100000,
            ..Default::default()
        }
    }

    fn addr(bytes: &[u8]) -> Option<u64> {
        let found = operand_address(bytes, &regs(), 0x1_0000_0000, 0x2_0000_0000);
        if let Some((_, len)) = found {
            assert!(len <= bytes.len(), "{bytes:02x?}: length {len}");
        }
        found.map(|(a, _)| a)
    }

    #[test]
    fn lengths_cover_prefixes_operands_and_immediates() {
        let len = |b: &[u8]| operand_address(b, &regs(), 0, 0).map(|(_, l)| l);
        assert_eq!(len(&[0x66, 0x0f, 0x38, 0x00, 0x00, 0x90, 0x90]), Some(5));
        assert_eq!(
            len(&[0x66, 0x0f, 0x70, 0x05, 0, 1, 0, 0, 0x1b, 0x90]),
            Some(9)
        );
        assert_eq!(len(&[0xf3, 0x0f, 0x6f, 0x44, 0xcb, 0x20, 0x90]), Some(6));
    }

    #[test]
    fn sse_and_friends_through_rax() {
        let cases: &[&[u8]] = &[
            &[0x0f, 0x58, 0x00],                   // addps xmm0, [rax]
            &[0x66, 0x0f, 0x38, 0x00, 0x00],       // pshufb xmm0, [rax]
            &[0x66, 0x0f, 0x74, 0x00],             // pcmpeqb xmm0, [rax]
            &[0xf3, 0x48, 0x0f, 0xb8, 0x00],       // popcnt rax, [rax]
            &[0xf2, 0x48, 0x0f, 0x38, 0xf1, 0x00], // crc32 rax, qword [rax]
            &[0xf2, 0x0f, 0xf0, 0x00],             // lddqu xmm0, [rax]
            &[0x66, 0x0f, 0x38, 0x2a, 0x00],       // movntdqa xmm0, [rax]
            &[0x66, 0x0f, 0x38, 0xdc, 0x00],       // aesenc xmm0, [rax]
            &[0xd9, 0x00],                         // fld dword [rax]
            &[0xdd, 0x08],                         // fisttp qword [rax]
            &[0xd9, 0x30],                         // fnstenv [rax]
            &[0x0f, 0xae, 0x00],                   // fxsave [rax]
            &[0x0f, 0xae, 0x08],                   // fxrstor [rax]
            &[0x0f, 0xfc, 0x00],                   // paddb mm0, [rax]
            &[0xc5, 0xf9, 0x6f, 0x00],             // vmovdqa xmm0, [rax]
            &[0xc4, 0xe2, 0x79, 0x00, 0x00],       // vpshufb xmm0, xmm0, [rax]
        ];
        for bytes in cases {
            assert_eq!(addr(bytes), Some(0x4200000), "{bytes:02x?}");
        }
    }

    #[test]
    fn modrm_sib_displacement_and_rip() {
        // movdqu xmm0, [rbx + rcx*8 + 0x20]
        assert_eq!(
            addr(&[0xf3, 0x0f, 0x6f, 0x44, 0xcb, 0x20]),
            Some(0x1000 + 24 + 0x20)
        );
        // addps xmm1, [r8 + 0x12345678] (REX.B)
        assert_eq!(
            addr(&[0x41, 0x0f, 0x58, 0x88, 0x78, 0x56, 0x34, 0x12]),
            Some(0x500000 + 0x12345678)
        );
        // [r13] needs mod 1 with disp8 0; [rsi*4 + disp32] has no base.
        assert_eq!(addr(&[0x41, 0x0f, 0x58, 0x45, 0xf0]), Some(0x7000 - 0x10));
        assert_eq!(
            addr(&[0x0f, 0x58, 0x04, 0xb5, 0, 0x10, 0, 0]),
            Some(0x40 + 0x1000)
        );
        // pshufd xmm0, [rip + 0x100], 0x1b: the immediate counts for the end.
        assert_eq!(
            addr(&[0x66, 0x0f, 0x70, 0x05, 0, 1, 0, 0, 0x1b]),
            Some(0x100000 + 9 + 0x100)
        );
        // palignr xmm0, [rax], 4 (0F3A takes an imm8) through GS.
        assert_eq!(
            addr(&[0x65, 0x66, 0x0f, 0x3a, 0x0f, 0x00, 0x04]),
            Some(0x2_0000_0000 + 0x4200000)
        );
        // addr32 addps xmm0, [eax - 1]
        assert_eq!(addr(&[0x67, 0x0f, 0x58, 0x40, 0xff]), Some(0x41fffff));
    }

    #[test]
    fn register_operands_and_unknown_encodings_have_no_address() {
        assert_eq!(addr(&[0x0f, 0x58, 0xc1]), None); // addps xmm0, xmm1
        assert_eq!(addr(&[0x8b, 0x00]), None); // mov: one-byte map, not decoded
        assert_eq!(addr(&[0x62, 0xf1, 0x7c, 0x48, 0x58, 0x00]), None); // EVEX
        assert_eq!(addr(&[0x0f, 0x0b]), None); // ud2
        assert_eq!(addr(&[0x66, 0x0f, 0x38]), None); // cut short
        assert_eq!(addr(&[0x66; 20]), None);
    }

    #[test]
    fn random_bytes_never_panic_and_lengths_fit() {
        let mut rng = crate::testing::Rng::new(5);
        for _ in 0..100_000 {
            let mut bytes: Vec<u8> = (0..rng.index(MAX_LEN + 1))
                .map(|_| rng.next().to_le_bytes()[0])
                .collect();
            // Often start like the instructions this is for.
            if rng.below(2) == 0 && bytes.len() > 2 {
                bytes[0] = [0x0f, 0x66, 0xf3, 0xd9, 0xc4, 0x48][rng.index(6)];
            }
            if let Some((_, len)) = operand_address(&bytes, &regs(), 0, 0) {
                assert!(len <= bytes.len() && len <= MAX_LEN, "{bytes:02x?}");
            }
        }
    }
}
