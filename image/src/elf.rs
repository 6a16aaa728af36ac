//! The guest image: validation of the ELF file and loading of its segments.
//!
//! Validation happens on the raw bytes before anything touches guest memory, so a bad
//! file gets a message that names the exact problem (class, machine, type, a segment
//! that does not fit) instead of a loader error code. The file is read once, never
//! mapped: every compartment is loaded from the very bytes that were validated,
//! whatever happens to the file during the run; crash reports read the rest (symbols,
//! line tables) through the file opened at start.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flexos_abi::{IMAGE_BASE, PAGE_SIZE};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::{ImageError, Result};
pub use crate::segment::{Segment, SegmentPerms};

/// An image file's bytes, a private copy made once. Never a mapping of the file: a
/// file truncated under a mapping turns the next read of it into SIGBUS.
pub enum ImageBytes {
    /// What booting needs, read from the file into anonymous memory of the file's
    /// size (see `read_boot_copy`; a page fault costs ~2 us on this nested host, so
    /// only the pages read are ever touched).
    Copied(memmap2::Mmap),
    /// Bytes that came from elsewhere (tests, fuzzing).
    Owned(Vec<u8>),
}

impl std::ops::Deref for ImageBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ImageBytes::Copied(m) => m,
            ImageBytes::Owned(v) => v,
        }
    }
}

/// File bytes one segment puts into guest memory: `file` indexes [`Image::bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub addr: u64,
    pub file: Range<usize>,
}

/// A validated image: its bytes (kept for symbolization) and its loadable layout.
pub struct Image {
    pub path: PathBuf,
    pub bytes: ImageBytes,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// First page-aligned address after the last segment.
    pub end: u64,
    /// What loading copies, each inside its segment (checked at validation).
    chunks: Vec<Chunk>,
    /// The whole file, when `bytes` holds only what booting needs.
    full: Option<FullCopy>,
    /// See [`Image::file_id`].
    file_id: Option<(u64, u64)>,
}

/// The whole image file, read when a crash report (or a debugging session) first needs
/// it, through the file opened at start: replacing the file by rename cannot change
/// what is read, and a file truncated in place gives a short read, never a fault.
/// Reading and faulting in a megabyte of debug info on the boot path cost ~0.25 ms.
struct FullCopy {
    /// The file as opened at start: the same file even if the path was replaced since.
    file: File,
    len: usize,
    bytes: OnceLock<Option<Vec<u8>>>,
}

impl FullCopy {
    fn get(&self) -> Option<&[u8]> {
        self.bytes
            .get_or_init(|| {
                let mut bytes = vec![0u8; self.len];
                self.file.read_exact_at(&mut bytes, 0).ok().map(|()| bytes)
            })
            .as_deref()
    }
}

/// Reads what booting needs from `file` (`len` bytes long) into a private copy of the
/// file's size whose other bytes stay zero, and untouched, so they cost nothing: the
/// ELF and program headers, the loadable segments, the section headers, the section
/// names and every allocated section (the component table among them). A file whose
/// headers look unusual is read whole; validation then says what is wrong with it.
fn read_boot_copy(file: &File, len: usize) -> std::io::Result<memmap2::Mmap> {
    boot_copy(len, |buf, offset| file.read_exact_at(buf, offset))
}

/// [`read_boot_copy`] from any source of a `len`-byte file: `read_at(buf, offset)` fills
/// `buf` from `offset` (fuzzing reads from memory).
pub fn boot_copy(
    len: usize,
    read_at: impl Fn(&mut [u8], u64) -> std::io::Result<()>,
) -> std::io::Result<memmap2::Mmap> {
    let mut copy = memmap2::MmapOptions::new().len(len).map_anon()?;
    let end = len as u64;
    let read = |copy: &mut [u8], start: u64, size: u64| -> std::io::Result<()> {
        let (from, to) = (start.min(end), start.saturating_add(size).min(end));
        // Both are at most `end`, which came from a usize.
        let range = usize::try_from(from).unwrap_or(len)..usize::try_from(to).unwrap_or(len);
        read_at(&mut copy[range], from)
    };
    // Header fields; offsets come from the file, so anything out of range reads as 0.
    let field = |b: &[u8], at: u64, n: usize| -> u64 {
        let Some(v) = usize::try_from(at)
            .ok()
            .and_then(|at| b.get(at..at.checked_add(n)?))
        else {
            return 0;
        };
        v.iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x))
    };
    let u16_at = |b: &[u8], at: u64| field(b, at, 2);
    let u64_at = |b: &[u8], at: u64| field(b, at, 8);
    read(&mut copy, 0, 64)?;
    let (phoff, shoff) = (u64_at(&copy, 32), u64_at(&copy, 40));
    let (phsize, phnum) = (u16_at(&copy, 54), u16_at(&copy, 56));
    let (shsize, shnum, shstrndx) = (u16_at(&copy, 58), u16_at(&copy, 60), u16_at(&copy, 62));
    let usual = len >= 64
        && copy[..4] == *b"\x7fELF"
        && copy[4] == elf::ELFCLASS64
        && copy[5] == elf::ELFDATA2LSB
        && phsize == 56
        && shsize == 64
        && shnum > 0
        && shstrndx < shnum;
    if !usual {
        read(&mut copy, 0, end)?;
        return copy.make_read_only();
    }
    read(&mut copy, phoff, phsize * phnum)?;
    for i in 0..phnum {
        let ph = phoff.saturating_add(i * phsize);
        if field(&copy, ph, 4) == u64::from(elf::PT_LOAD) {
            let (offset, size) = (
                u64_at(&copy, ph.saturating_add(8)),
                u64_at(&copy, ph.saturating_add(32)),
            );
            read(&mut copy, offset, size)?;
        }
    }
    read(&mut copy, shoff, shsize * shnum)?;
    for i in 0..shnum {
        let sh = shoff.saturating_add(i * shsize);
        let kind = field(&copy, sh.saturating_add(4), 4);
        let flags = u64_at(&copy, sh.saturating_add(8));
        let alloc = flags & u64::from(elf::SHF_ALLOC) != 0 && kind != u64::from(elf::SHT_NOBITS);
        if alloc || i == shstrndx {
            let (offset, size) = (
                u64_at(&copy, sh.saturating_add(24)),
                u64_at(&copy, sh.saturating_add(32)),
            );
            read(&mut copy, offset, size)?;
        }
    }
    copy.make_read_only()
}

/// Largest image file the monitor reads (debug info included).
pub const MAX_IMAGE_FILE: u64 = 1 << 30;

/// Guest memory refused a validated segment (see [`Image::load`]).
#[derive(Debug, thiserror::Error)]
#[error("loading the image segment at {addr:#x}: {source}")]
pub struct LoadError {
    pub addr: u64,
    #[source]
    pub source: vm_memory::GuestMemoryError,
}

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Bad {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390",
        _ => "unknown",
    }
}

impl Image {
    /// Reads and validates the image at `path`; `load_limit` is the first guest-physical
    /// address the image may not reach (the start of the stack/heap area it needs).
    pub fn open(path: &Path, load_limit: u64) -> Result<Image> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ImageError::Unreadable {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            return Err(ImageError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        let unreadable = |e| ImageError::Unreadable {
            path: path.to_path_buf(),
            source: e,
        };
        let (file, meta) = crate::input_file::open_for_reading(path).map_err(unreadable)?;
        if !meta.is_file() {
            return Err(bad(path, "not a regular file"));
        }
        if meta.len() > MAX_IMAGE_FILE {
            return Err(bad(
                path,
                format!(
                    "{} bytes; an image file is at most {} MiB",
                    meta.len(),
                    MAX_IMAGE_FILE >> 20
                ),
            ));
        }
        if meta.len() == 0 {
            return Err(bad(path, "the file is empty"));
        }
        let len = usize::try_from(meta.len())
            .map_err(|_| bad(path, "the file is larger than this host's address space"))?;
        let shrank = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad(path, "the file shrank while it was read"),
            _ => unreadable(e),
        };
        let boot = read_boot_copy(&file, len).map_err(shrank)?;
        let mut image = Self::from_bytes(path, ImageBytes::Copied(boot), load_limit)?;
        image.full = Some(FullCopy {
            file,
            len,
            bytes: OnceLock::new(),
        });
        image.file_id = Some((meta.dev(), meta.ino()));
        Ok(image)
    }

    /// The (device, inode) of the file the image was read from, when it came from one:
    /// a disk or core must never be that file.
    pub fn file_id(&self) -> Option<(u64, u64)> {
        self.file_id
    }

    /// Validates image bytes as [`Image::open`] does; `path` only names it in errors.
    pub fn from_bytes(path: &Path, bytes: ImageBytes, load_limit: u64) -> Result<Image> {
        if bytes.is_empty() {
            return Err(bad(path, "the file is empty"));
        }
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            return Err(bad(path, "not an ELF file (no \\x7fELF magic)"));
        }
        if bytes.len() < 20 {
            return Err(bad(path, "truncated ELF header"));
        }
        match bytes[4] {
            elf::ELFCLASS64 => {}
            elf::ELFCLASS32 => return Err(bad(
                path,
                "32-bit ELF; flexos-vmm boots 64-bit x86_64 images (build for x86_64-unknown-none)",
            )),
            c => return Err(bad(path, format!("unknown ELF class {c}"))),
        }
        if bytes[5] != elf::ELFDATA2LSB {
            return Err(bad(
                path,
                "big-endian ELF; flexos-vmm boots little-endian x86_64 images",
            ));
        }
        let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
        if machine != elf::EM_X86_64 {
            return Err(bad(
                path,
                format!(
                    "built for {} (ELF machine {machine}), not x86_64",
                    machine_name(machine)
                ),
            ));
        }
        let header = elf::FileHeader64::<Endianness>::parse(&*bytes)
            .map_err(|e| bad(path, format!("malformed ELF header: {e}")))?;
        let endian = header
            .endian()
            .map_err(|e| bad(path, format!("malformed ELF header: {e}")))?;
        let e_type = header.e_type(endian);
        if e_type != elf::ET_EXEC {
            let what = if e_type == elf::ET_DYN {
                "a position-independent (ET_DYN) object"
            } else {
                "not an executable"
            };
            return Err(bad(
                path,
                format!("{what}; link it statically at {IMAGE_BASE:#x} (ET_EXEC)"),
            ));
        }
        let phdrs = header
            .program_headers(endian, &*bytes)
            .map_err(|e| bad(path, format!("malformed program headers: {e}")))?;

        let mut segments: Vec<Segment> = Vec::new();
        let mut chunks = Vec::new();
        for (i, ph) in phdrs.iter().enumerate() {
            match ph.p_type(endian) {
                elf::PT_LOAD => {}
                elf::PT_INTERP | elf::PT_DYNAMIC => {
                    return Err(bad(path, "dynamically linked; link the image statically"))
                }
                _ => continue,
            }
            let vaddr = ph.p_vaddr(endian);
            let paddr = ph.p_paddr(endian);
            let memsz = ph.p_memsz(endian);
            let filesz = ph.p_filesz(endian);
            let offset = ph.p_offset(endian);
            // Checked before anything else: a segment with file bytes but no memory
            // would otherwise skip the checks below and still be copied somewhere.
            if filesz > memsz {
                return Err(bad(
                    path,
                    format!(
                        "segment {i}: file size {filesz:#x} exceeds its memory size {memsz:#x}"
                    ),
                ));
            }
            if memsz == 0 {
                continue;
            }
            if vaddr != paddr {
                return Err(bad(path, format!("segment {i}: virtual address {vaddr:#x} differs from physical {paddr:#x}; guests are identity-mapped")));
            }
            if vaddr % PAGE_SIZE != 0 {
                return Err(bad(path, format!("segment {i} at {vaddr:#x} is not page-aligned; link with the flexos linker script")));
            }
            let file = match offset.checked_add(filesz) {
                // Both fit: end <= bytes.len(), a usize.
                Some(end) if end <= bytes.len() as u64 => {
                    usize::try_from(offset).unwrap_or(0)..usize::try_from(end).unwrap_or(0)
                }
                _ => {
                    return Err(bad(
                        path,
                        format!("segment {i}: file range is outside the file (truncated image?)"),
                    ))
                }
            };
            let end = vaddr
                .checked_add(memsz)
                .and_then(|e| e.checked_next_multiple_of(PAGE_SIZE))
                .ok_or_else(|| bad(path, format!("segment {i}: size overflows")))?;
            if vaddr < IMAGE_BASE || end > load_limit {
                return Err(bad(path, format!(
                    "segment {i} ({vaddr:#x}..{end:#x}) lies outside the memory for the image ({IMAGE_BASE:#x}..{load_limit:#x}); raise --mem or relink at {IMAGE_BASE:#x}"
                )));
            }
            if let Some(prev) = segments.iter().find(|s| s.start < end && vaddr < s.end) {
                return Err(bad(path, format!(
                    "segment {i} ({vaddr:#x}..{end:#x}) shares a page with the segment at {:#x}; page-align segments", prev.start
                )));
            }
            if !file.is_empty() {
                chunks.push(Chunk { addr: vaddr, file });
            }
            let flags = ph.p_flags(endian);
            segments.push(Segment {
                start: vaddr,
                end,
                perms: SegmentPerms {
                    write: flags & elf::PF_W != 0,
                    exec: flags & elf::PF_X != 0,
                },
            });
        }
        if segments.is_empty() {
            return Err(bad(path, "no loadable segments"));
        }
        segments.sort_by_key(|s| s.start);
        let entry = header.e_entry(endian);
        if !segments
            .iter()
            .any(|s| s.perms.exec && (s.start..s.end).contains(&entry))
        {
            return Err(bad(
                path,
                format!("entry point {entry:#x} is not inside an executable segment"),
            ));
        }
        if let Some(s) = segments.iter().find(|s| s.perms.write && s.perms.exec) {
            return Err(bad(
                path,
                format!(
                    "segment at {:#x} is both writable and executable; split text and data",
                    s.start
                ),
            ));
        }
        let end = segments.last().map(|s| s.end).unwrap_or(IMAGE_BASE);
        Ok(Image {
            path: path.to_path_buf(),
            bytes,
            entry,
            segments,
            end,
            chunks,
            full: None,
            file_id: None,
        })
    }

    /// The whole image file, for symbolization (symbols and line tables are not in the
    /// boot copy), read on the first call. If the file shrank before then, the boot
    /// copy stands in: addresses without names, but a report all the same.
    pub fn file_bytes(&self) -> &[u8] {
        match &self.full {
            Some(full) => full.get().unwrap_or(&self.bytes),
            None => &self.bytes,
        }
    }

    /// The executable segments' memory: where code, and so breakpoints, can be.
    pub fn code(&self) -> Vec<Range<u64>> {
        self.segments
            .iter()
            .filter(|s| s.perms.exec)
            .map(|s| s.start..s.end)
            .collect()
    }

    /// What [`Image::load`] copies: guest-physical address and file bytes, per segment.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.chunks
            .iter()
            .map(|c| (c.addr, &self.bytes[c.file.clone()]))
    }

    /// Copies the validated segment bytes into guest memory (bss stays zero: guest
    /// memory is fresh). A failure is the monitor's (the memory it built is too small),
    /// never the image's: validation placed every segment.
    pub fn load(&self, mem: &GuestMemoryMmap) -> std::result::Result<(), LoadError> {
        for (addr, bytes) in self.chunks() {
            mem.write_slice(bytes, GuestAddress(addr))
                .map_err(|source| LoadError { addr, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF image with the given header fields and one PT_LOAD segment
    /// (vaddr, memsz, flags), from the workspace's one ELF builder.
    pub(crate) fn elf_bytes(
        class: u8,
        machine: u16,
        e_type: u16,
        seg: (u64, u64, u32),
        entry: u64,
    ) -> Vec<u8> {
        flexos_testkit::ElfBuilder::new()
            .class(class)
            .machine(machine)
            .e_type(e_type)
            .vaddr(seg.0)
            .memsz(seg.1)
            .flags(seg.2)
            .entry(entry)
            // 16 bytes of file contents: `ud2` and padding (tests overwrite them).
            .code(&[0x0f, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .build()
    }

    fn check(bytes: Vec<u8>) -> std::result::Result<Image, String> {
        Image::from_bytes(Path::new("t.elf"), ImageBytes::Owned(bytes), 0x40_0000)
            .map_err(|e| e.to_string())
    }

    const RX: u32 = elf::PF_R | elf::PF_X;

    #[test]
    fn accepts_a_minimal_executable() {
        let img = check(elf_bytes(
            2,
            elf::EM_X86_64,
            elf::ET_EXEC,
            (0x10_0000, 0x1000, RX),
            0x10_0000,
        ))
        .unwrap();
        assert_eq!(img.segments.len(), 1);
        assert_eq!(img.end, 0x10_1000);
    }

    #[test]
    fn rejects_what_it_cannot_boot() {
        let cases = [
            (
                elf_bytes(
                    1,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x10_0000, 0x1000, RX),
                    0x10_0000,
                ),
                "32-bit ELF",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_AARCH64,
                    elf::ET_EXEC,
                    (0x10_0000, 0x1000, RX),
                    0x10_0000,
                ),
                "built for aarch64",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_DYN,
                    (0x10_0000, 0x1000, RX),
                    0x10_0000,
                ),
                "position-independent",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x3F_F000, 0x2000, RX),
                    0x3F_F000,
                ),
                "lies outside the memory",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x8_0000, 0x1000, RX),
                    0x8_0000,
                ),
                "lies outside the memory",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x10_0000, 0x1000, elf::PF_R),
                    0x10_0000,
                ),
                "not inside an executable segment",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x10_0000, 0x1000, RX),
                    0x20_0000,
                ),
                "not inside an executable segment",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x10_0010, 0x1000, RX),
                    0x10_0010,
                ),
                "not page-aligned",
            ),
            (
                elf_bytes(
                    2,
                    elf::EM_X86_64,
                    elf::ET_EXEC,
                    (0x10_0000, 0x1000, RX | elf::PF_W),
                    0x10_0000,
                ),
                "writable and executable",
            ),
            (Vec::new(), "empty"),
            (b"#!/bin/sh\necho hi\n".to_vec(), "not an ELF"),
        ];
        for (bytes, want) in cases {
            let err = check(bytes).err().expect(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    /// `elf_bytes` with a second PT_LOAD header: `(vaddr, filesz, memsz, flags)`, its
    /// file bytes at offset 0x1000 like the first's.
    fn with_second_segment(mut b: Vec<u8>, seg: (u64, u64, u64, u32)) -> Vec<u8> {
        b[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
        let ph = 64 + 56;
        b[ph..ph + 4].copy_from_slice(&elf::PT_LOAD.to_le_bytes());
        b[ph + 4..ph + 8].copy_from_slice(&seg.3.to_le_bytes());
        b[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        b[ph + 16..ph + 24].copy_from_slice(&seg.0.to_le_bytes());
        b[ph + 24..ph + 32].copy_from_slice(&seg.0.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&seg.1.to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&seg.2.to_le_bytes());
        b
    }

    fn minimal() -> Vec<u8> {
        elf_bytes(
            2,
            elf::EM_X86_64,
            elf::ET_EXEC,
            (0x10_0000, 0x1000, RX),
            0x10_0000,
        )
    }

    #[test]
    fn file_bytes_without_memory_are_rejected_wherever_they_point() {
        // memsz 0 used to skip every check while the loader still copied filesz bytes.
        for vaddr in [0x1000, 0x10_0000, 0x1_0000_0000, 0x10_0003] {
            let b = with_second_segment(minimal(), (vaddr, 16, 0, elf::PF_R | elf::PF_W));
            let err = check(b).err().expect("filesz > memsz must be rejected");
            assert!(
                err.contains("segment 1: file size 0x10 exceeds its memory size 0x0"),
                "{err}"
            );
        }
        let b = with_second_segment(minimal(), (0x20_0000, 17, 16, elf::PF_R));
        let err = check(b).err().expect("filesz > memsz must be rejected");
        assert!(
            err.contains("file size 0x11 exceeds its memory size 0x10"),
            "{err}"
        );
        // An empty segment (nothing in the file, nothing in memory) is harmless.
        let b = with_second_segment(minimal(), (0x1_0000_0000, 0, 0, elf::PF_R));
        assert_eq!(check(b).unwrap().segments.len(), 1);
    }

    #[test]
    fn loading_copies_exactly_the_validated_bytes() {
        let dir = std::env::temp_dir().join(format!("flexos-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img.elf");
        let mut bytes = minimal();
        bytes[0x1000..0x1010].copy_from_slice(b"validated bytes!");
        std::fs::write(&path, &bytes).unwrap();
        let img = Image::open(&path, 0x40_0000).unwrap();
        // The file changes after validation: loading must not see it (it used to reopen
        // the file by path), and a truncated file must not fault the reads.
        let mut other = bytes.clone();
        other[0x1000..0x1010].copy_from_slice(b"swapped in later");
        std::fs::write(&path, &other).unwrap();
        std::fs::File::create(&path).unwrap().set_len(10).unwrap();

        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        img.load(&mem).unwrap();
        let mut seen = [0u8; 16];
        mem.read_slice(&mut seen, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(&seen, b"validated bytes!");
        assert_eq!(&img.bytes[..], &bytes[..]);

        // The whole file is read when first needed, through the file opened at start: a
        // file replaced by rename (as scripts/build does) is still the old one...
        std::fs::write(&path, &bytes).unwrap();
        let img = Image::open(&path, 0x40_0000).unwrap();
        std::fs::write(dir.join("new.elf"), &other).unwrap();
        std::fs::rename(dir.join("new.elf"), &path).unwrap();
        assert_eq!(img.file_bytes(), &bytes[..]);
        // ...and one truncated in place leaves the boot copy, not a fault.
        std::fs::write(&path, &bytes).unwrap();
        let img = Image::open(&path, 0x40_0000).unwrap();
        std::fs::File::create(&path).unwrap().set_len(10).unwrap();
        assert_eq!(img.file_bytes(), &img.bytes[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_boot_copy_holds_what_booting_reads_and_nothing_else() {
        use object::{Object, ObjectSection, SectionFlags};
        // Our own executable has allocated sections and, in tests, debug info.
        let exe = std::env::current_exe().unwrap();
        let full = std::fs::read(&exe).unwrap();
        let boot = read_boot_copy(&File::open(&exe).unwrap(), full.len()).unwrap();
        assert_eq!(boot.len(), full.len());
        assert_eq!(&boot[..64], &full[..64]);
        let obj = object::File::parse(&*full).unwrap();
        let (mut alloc, mut other) = (0, 0);
        for section in obj.sections() {
            let Some((offset, size)) = section.file_range() else {
                continue;
            };
            let range = usize::try_from(offset).unwrap()..usize::try_from(offset + size).unwrap();
            let SectionFlags::Elf { sh_flags } = section.flags() else {
                unreachable!("an ELF section")
            };
            if sh_flags & u64::from(elf::SHF_ALLOC) != 0 {
                assert_eq!(&boot[range.clone()], &full[range], "{:?}", section.name());
                alloc += 1;
            } else if section.name() == Ok(".debug_info") || section.name() == Ok(".symtab") {
                assert!(boot[range].iter().all(|&b| b == 0), "{:?}", section.name());
                other += 1;
            }
        }
        assert!(
            alloc > 0 && other > 0,
            "{alloc} allocated, {other} others checked"
        );
        // Parsing the section table works on the boot copy (the component table is
        // found the same way).
        let parsed = object::File::parse(&*boot).unwrap();
        assert!(parsed.section_by_name(".text").is_some());
    }

    #[test]
    fn the_boot_copy_of_mutated_headers_never_panics() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!("flexos-bootcopy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        let mut rng = flexos_testkit::Rng::new(0xb007);
        for _ in 0..300 {
            // The ELF header plus the first program and section headers it points at.
            let mut bytes = exe[..exe.len().min(256 << 10)].to_vec();
            rng.mutate(&mut bytes[..64]);
            std::fs::write(&path, &bytes).unwrap();
            let file = File::open(&path).unwrap();
            if let Ok(copy) = read_boot_copy(&file, bytes.len()) {
                assert_eq!(&copy[..64], &bytes[..64]);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_image_must_be_a_regular_file() {
        let err = Image::open(Path::new("/dev/zero"), 0x40_0000)
            .err()
            .expect("/dev/zero is no image");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(err.exit_code(), crate::error::EXIT_BAD_IMAGE);
    }

    #[test]
    fn truncated_files_never_panic() {
        let full = elf_bytes(
            2,
            elf::EM_X86_64,
            elf::ET_EXEC,
            (0x10_0000, 0x1000, RX),
            0x10_0000,
        );
        for len in 0..full.len() {
            let _ = check(full[..len].to_vec());
        }
    }

    #[test]
    fn mutated_headers_are_rejected_or_accepted_but_never_panic() {
        // Text and data, so mutations reach a second program header too.
        let full = with_second_segment(minimal(), (0x10_1000, 16, 0x1000, elf::PF_R | elf::PF_W));
        assert_eq!(check(full.clone()).unwrap().segments.len(), 2);
        let mut rng = flexos_testkit::Rng::new(0x5eed);
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut bytes = full.clone();
            // Only the headers matter to validation: mutate the ELF and program headers.
            rng.mutate(&mut bytes[..176]);
            if let Ok(img) = check(bytes) {
                accepted += 1;
                // Whatever was accepted obeys the rules the loader relies on.
                assert!(img
                    .segments
                    .iter()
                    .all(|s| s.start >= IMAGE_BASE && s.end <= 0x40_0000));
                assert!(img
                    .segments
                    .iter()
                    .any(|s| s.perms.exec && (s.start..s.end).contains(&img.entry)));
                // ...and what loading copies lies inside an accepted segment.
                for (addr, bytes) in img.chunks() {
                    let end = addr + bytes.len() as u64;
                    assert!(img.segments.iter().any(|s| s.start <= addr && end <= s.end));
                }
            }
        }
        assert!(
            accepted > 0,
            "some mutations (e.g. of padding) must stay valid"
        );
    }
}
