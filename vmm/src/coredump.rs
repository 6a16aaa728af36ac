//! ELF core files of crashed runs, one per compartment (each VM is its own address
//! space), readable by stock gdb next to the image: `gdb image.elf core`.
//!
//! A core holds one thread (the compartment's vCPU) and the compartment's memory as the
//! VM sees it, identity-mapped as in the guest: its low region (monitor area and
//! image), its data window, and the shared pages it is a party to; nothing else, so a
//! core never carries another compartment's memory. Pages the guest never touched
//! (not resident on the host, found with `mincore`) take no room in the file: they are
//! `PT_LOAD` segments whose file size is 0, which gdb reads as zeros, like a process's
//! untouched bss.
//!
//! Notes, as Linux writes them for an x86-64 process: `NT_PRSTATUS` (signal and the
//! general registers in `user_regs_struct` order), `NT_PRPSINFO` (the program name:
//! the image's file name, and the compartment in the argument string) and
//! `NT_FPREGSET` (the FXSAVE area: x87, SSE registers, MXCSR).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

const PAGE: u64 = 4096;
/// [`PAGE`] as a buffer length.
const PAGE_BYTES: usize = 4096;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_R: u32 = 4;
const PF_W: u32 = 2;
const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
/// `sizeof(struct elf_prstatus)` on x86-64 Linux.
const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_reg` inside it.
const PRSTATUS_REGS: usize = 112;
/// `sizeof(struct elf_prpsinfo)` on x86-64 Linux.
const PRPSINFO_SIZE: usize = 136;
/// The FXSAVE area (`user_fpregs_struct`).
const FPREGSET_SIZE: usize = 512;

/// The state of the compartment's vCPU that goes into the core.
#[derive(Clone, Debug)]
pub struct CoreThread {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: kvm_fpu,
    /// The signal gdb shows as the reason the program stopped (e.g. SIGSEGV = 11).
    pub signal: u32,
}

/// Who the core belongs to.
#[derive(Clone, Debug)]
pub struct CoreOwner<'a> {
    /// The image's file name (what `info proc`/`core` show as the program).
    pub program: &'a str,
    pub compartment: u32,
    pub name: &'a str,
}

/// One `PT_LOAD` segment: guest range and whether its bytes are in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    range: Range<u64>,
    in_file: bool,
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreStats {
    /// Size of the core file in bytes.
    pub bytes: u64,
    /// Bytes of guest memory the file holds (touched pages).
    pub memory: u64,
}

/// Writes the core of one compartment into `file` (new and empty; see
/// [`core_dir`](crate::core_dir) for where it comes from).
pub fn write_core(
    file: File,
    mem: &GuestMemoryMmap,
    thread: &CoreThread,
    owner: &CoreOwner<'_>,
) -> io::Result<CoreStats> {
    let segments = segments(mem);
    let notes = notes(thread, owner);
    let phnum = segments.len() + 1;
    let notes_at = (EHDR_SIZE + PHDR_SIZE * phnum) as u64;
    let notes_len = notes.len() as u64;
    let mut data_at = (notes_at + notes_len).next_multiple_of(PAGE);

    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&elf_header(u16::try_from(phnum).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many segments for one core",
        )
    })?))?;
    out.write_all(&program_header(
        PT_NOTE,
        0,
        notes_at,
        0,
        notes.len() as u64,
        0,
        4,
    ))?;
    let mut placed = Vec::with_capacity(segments.len());
    for s in &segments {
        let len = s.range.end - s.range.start;
        let file_len = if s.in_file { len } else { 0 };
        out.write_all(&program_header(
            PT_LOAD,
            PF_R | PF_W,
            if s.in_file { data_at } else { 0 },
            s.range.start,
            file_len,
            len,
            PAGE,
        ))?;
        if s.in_file {
            placed.push((data_at, s.range.clone()));
            data_at += len;
        }
    }
    out.write_all(&notes)?;
    let mut memory = 0;
    let mut page = vec![0u8; PAGE_BYTES];
    for (at, range) in placed {
        out.seek(SeekFrom::Start(at))?;
        let mut gpa = range.start;
        while gpa < range.end {
            mem.read_slice(&mut page, GuestAddress(gpa))
                .map_err(|e| io::Error::other(format!("reading guest memory at {gpa:#x}: {e}")))?;
            out.write_all(&page)?;
            gpa += PAGE;
            memory += PAGE;
        }
    }
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    let bytes = file.metadata()?.len();
    Ok(CoreStats { bytes, memory })
}

/// The compartment's memory as PT_LOAD segments: every region, cut into runs of
/// resident (touched) pages, which go into the file, and runs of untouched ones,
/// which do not.
fn segments(mem: &GuestMemoryMmap) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for region in mem.iter() {
        let start = region.start_addr().0;
        let len = region.len();
        let resident = mem
            .get_host_address(GuestAddress(start))
            .ok()
            .and_then(|host| resident_pages(host, len));
        let pages = (start..start + len).step_by(PAGE_BYTES);
        for (i, page) in pages.enumerate() {
            // Unknown residency counts as touched: the core is then bigger, never wrong.
            let touched = resident
                .as_ref()
                .is_none_or(|r| r.get(i).copied().unwrap_or(true));
            match out.last_mut() {
                Some(last) if last.range.end == page && last.in_file == touched => {
                    last.range.end = page + PAGE;
                }
                _ => out.push(Segment {
                    range: page..page + PAGE,
                    in_file: touched,
                }),
            }
        }
    }
    out
}

/// Which pages of the host mapping at `host .. host + len` are resident; `None` if
/// the kernel cannot say.
fn resident_pages(host: *mut u8, len: u64) -> Option<Vec<bool>> {
    let len = usize::try_from(len).ok()?;
    let mut vec = vec![0u8; len.div_ceil(PAGE_BYTES)];
    // SAFETY: `host .. host + len` is a live, page-aligned mapping owned by the guest
    // memory we were given; mincore only reads the kernel's page tables for it and
    // writes one byte per page into `vec`, which has exactly that many.
    let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr().cast()) };
    (rc == 0).then(|| vec.into_iter().map(|b| b & 1 != 0).collect())
}

fn elf_header(phnum: u16) -> [u8; EHDR_SIZE] {
    let mut h = [0u8; EHDR_SIZE];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little-endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h[56..58].copy_from_slice(&phnum.to_le_bytes());
    h[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize (no sections)
    h
}

fn program_header(
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
) -> [u8; PHDR_SIZE] {
    let mut p = [0u8; PHDR_SIZE];
    p[0..4].copy_from_slice(&kind.to_le_bytes());
    p[4..8].copy_from_slice(&flags.to_le_bytes());
    p[8..16].copy_from_slice(&offset.to_le_bytes());
    p[16..24].copy_from_slice(&vaddr.to_le_bytes());
    p[24..32].copy_from_slice(&vaddr.to_le_bytes()); // p_paddr: identity-mapped
    p[32..40].copy_from_slice(&filesz.to_le_bytes());
    p[40..48].copy_from_slice(&memsz.to_le_bytes());
    p[48..56].copy_from_slice(&align.to_le_bytes());
    p
}

/// One ELF note: name "CORE", 4-byte aligned name and descriptor.
fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    let name = b"CORE\0";
    out.extend_from_slice(&5u32.to_le_bytes()); // name.len()
                                                // Descriptors are the fixed-size structures below (at most 512 bytes).
    out.extend_from_slice(&u32::try_from(desc.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn notes(thread: &CoreThread, owner: &CoreOwner<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    note(&mut out, NT_PRSTATUS, &prstatus(thread));
    note(&mut out, NT_PRPSINFO, &prpsinfo(owner));
    note(&mut out, NT_FPREGSET, &fpregset(&thread.fpu));
    out
}

/// `struct elf_prstatus`: the signal, a pid (the compartment id + 1, so gdb names
/// the thread), and the registers in `user_regs_struct` order.
fn prstatus(t: &CoreThread) -> [u8; PRSTATUS_SIZE] {
    let mut p = [0u8; PRSTATUS_SIZE];
    p[0..4].copy_from_slice(&t.signal.to_le_bytes()); // si_signo
    p[12..14].copy_from_slice(&u16::try_from(t.signal).unwrap_or(0).to_le_bytes()); // pr_cursig
    p[32..36].copy_from_slice(&1u32.to_le_bytes()); // pr_pid
    let (r, s) = (&t.regs, &t.sregs);
    let selector = |seg: &kvm_bindings::kvm_segment| u64::from(seg.selector);
    let regs: [u64; 27] = [
        r.r15,
        r.r14,
        r.r13,
        r.r12,
        r.rbp,
        r.rbx,
        r.r11,
        r.r10,
        r.r9,
        r.r8,
        r.rax,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        u64::MAX, // orig_rax: not in a system call
        r.rip,
        selector(&s.cs),
        r.rflags,
        r.rsp,
        selector(&s.ss),
        s.fs.base,
        s.gs.base,
        selector(&s.ds),
        selector(&s.es),
        selector(&s.fs),
        selector(&s.gs),
    ];
    for (i, v) in regs.iter().enumerate() {
        let at = PRSTATUS_REGS + 8 * i;
        p[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    p[PRSTATUS_REGS + 8 * 27..PRSTATUS_REGS + 8 * 27 + 4].copy_from_slice(&1u32.to_le_bytes()); // pr_fpvalid
    p
}

/// `struct elf_prpsinfo`: state, program name (16 bytes) and arguments (80 bytes).
fn prpsinfo(owner: &CoreOwner<'_>) -> [u8; PRPSINFO_SIZE] {
    let mut p = [0u8; PRPSINFO_SIZE];
    p[1] = b'R'; // pr_sname
    p[24..28].copy_from_slice(&1u32.to_le_bytes()); // pr_pid
    let copy = |dst: &mut [u8], text: &str| {
        let n = text.len().min(dst.len() - 1);
        dst[..n].copy_from_slice(&text.as_bytes()[..n]);
    };
    copy(&mut p[40..56], owner.program);
    let args = format!(
        "{} compartment {} ({})",
        owner.program, owner.compartment, owner.name
    );
    copy(&mut p[56..136], &args);
    p
}

/// The FXSAVE area from KVM's FPU state.
fn fpregset(f: &kvm_fpu) -> [u8; FPREGSET_SIZE] {
    let mut p = [0u8; FPREGSET_SIZE];
    p[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    p[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    p[4] = f.ftwx;
    p[6..8].copy_from_slice(&f.last_opcode.to_le_bytes());
    p[8..16].copy_from_slice(&f.last_ip.to_le_bytes());
    p[16..24].copy_from_slice(&f.last_dp.to_le_bytes());
    p[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    p[28..32].copy_from_slice(&0xFFFFu32.to_le_bytes()); // mxcsr_mask
    for (i, st) in f.fpr.iter().enumerate() {
        p[32 + 16 * i..48 + 16 * i].copy_from_slice(st);
    }
    for (i, xmm) in f.xmm.iter().enumerate() {
        p[160 + 16 * i..176 + 16 * i].copy_from_slice(xmm);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::layout::MemoryPlan;
    use crate::memory::{compartment_memory, SharedRegion};
    use object::{Object, ObjectSegment};

    fn thread() -> CoreThread {
        let mut t = CoreThread {
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            fpu: kvm_fpu::default(),
            signal: 11,
        };
        t.regs.rip = 0x10_1234;
        t.regs.rsp = 0x1000_8000;
        t.regs.rax = 0xfeed;
        t.fpu.mxcsr = 0x1f80;
        t
    }

    #[test]
    fn a_core_is_an_elf_core_with_notes_and_only_touched_pages() {
        let shared = SharedRegion::new(2 << 20, 2).unwrap();
        let plan = MemoryPlan::new(16 << 20, 0x10_1000, 2).unwrap();
        let mem = compartment_memory(&plan, 1, &shared).unwrap();
        let data = plan.data_window(1).start;
        mem.write_slice(b"known string in memory", GuestAddress(data + 0x5000))
            .unwrap();
        let dir = std::env::temp_dir().join(format!("flexos-core-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("core");
        let owner = CoreOwner {
            program: "hello.elf",
            compartment: 1,
            name: "victim",
        };
        let stats = write_core(File::create(&path).unwrap(), &mem, &thread(), &owner).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(stats.bytes, bytes.len() as u64);
        // Far less than the 16 MiB of private memory: only touched pages are in it.
        assert!(stats.memory < 8 << 20, "{stats:?}");

        let elf = object::File::parse(&*bytes).unwrap();
        assert_eq!(elf.kind(), object::ObjectKind::Core);
        // The written string is where the guest put it.
        let seg = elf
            .segments()
            .find(|s| (s.address()..s.address() + s.size()).contains(&(data + 0x5000)))
            .expect("a segment holds the data window");
        let body = seg.data().unwrap();
        let off = usize::try_from(data + 0x5000 - seg.address()).unwrap();
        assert_eq!(&body[off..off + 22], b"known string in memory");
        // No segment reaches another compartment's window.
        let other = plan.data_window(0);
        for s in elf.segments() {
            let r = s.address()..s.address() + s.size();
            assert!(r.end <= other.start || r.start >= other.end, "{r:x?}");
        }
        // The registers sit in NT_PRSTATUS at pr_reg.
        let notes_at = bytes
            .windows(5)
            .position(|w| w == b"CORE\0")
            .expect("a CORE note");
        let desc = notes_at + 8;
        let reg = |i: usize| {
            let at = desc + PRSTATUS_REGS + 8 * i;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
        };
        assert_eq!(reg(16), 0x10_1234, "rip");
        assert_eq!(reg(19), 0x1000_8000, "rsp");
        assert_eq!(reg(10), 0xfeed, "rax");
        assert_eq!(
            u32::from_le_bytes(bytes[desc..desc + 4].try_into().unwrap()),
            11
        );
    }
}
