//! The guest image: validation of the ELF file and loading of its segments.
//!
//! Validation happens on the raw bytes before anything touches guest memory, so a bad
//! file gets a message that names the exact problem (class, machine, type, a segment
//! that does not fit) instead of a loader error code. Loading itself is linux-loader's.

use std::fs::File;
use std::path::{Path, PathBuf};

use flexos_abi::{IMAGE_BASE, PAGE_SIZE};
use linux_loader::loader::{Elf, KernelLoader};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use vm_memory::{GuestAddress, GuestMemoryMmap};

pub use crate::arch::image_segment::{Segment, SegmentPerms};
use crate::error::{Result, VmmError};

/// An image file's bytes: mapped from the file (only the pages the monitor reads are
/// ever faulted in; a page fault costs ~2 us on this nested host, so reading a 1 MB
/// image with debug info into a fresh buffer cost 0.6 ms of boot), or owned (tests).
pub enum ImageBytes {
    Mapped(memmap2::Mmap),
    /// Bytes that came from elsewhere (tests, fuzzing).
    Owned(Vec<u8>),
}

impl std::ops::Deref for ImageBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ImageBytes::Mapped(m) => m,
            ImageBytes::Owned(v) => v,
        }
    }
}

/// A validated image: its bytes (kept for symbolization) and its loadable layout.
pub struct Image {
    pub path: PathBuf,
    pub bytes: ImageBytes,
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// First page-aligned address after the last segment.
    pub end: u64,
}

fn bad(path: &Path, reason: impl Into<String>) -> VmmError {
    VmmError::BadImage {
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
            std::io::ErrorKind::NotFound => VmmError::ImageNotFound {
                path: path.to_path_buf(),
            },
            _ => VmmError::ImageUnreadable {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            return Err(VmmError::ImageIsDirectory {
                path: path.to_path_buf(),
            });
        }
        if meta.len() == 0 {
            return Err(bad(path, "the file is empty"));
        }
        let unreadable = |e| VmmError::ImageUnreadable {
            path: path.to_path_buf(),
            source: e,
        };
        let file = File::open(path).map_err(unreadable)?;
        // SAFETY: the mapping is private and read-only, and every byte of it is treated
        // as untrusted input; if the file changed under us the parsers would see other
        // bytes, which they already handle as bad input, never as memory safety.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(unreadable)?;
        Self::from_bytes(path, ImageBytes::Mapped(map), load_limit)
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
            if memsz == 0 {
                continue;
            }
            if vaddr != paddr {
                return Err(bad(path, format!("segment {i}: virtual address {vaddr:#x} differs from physical {paddr:#x}; guests are identity-mapped")));
            }
            if vaddr % PAGE_SIZE != 0 {
                return Err(bad(path, format!("segment {i} at {vaddr:#x} is not page-aligned; link with the flexos linker script")));
            }
            if filesz > memsz
                || offset
                    .checked_add(filesz)
                    .is_none_or(|end| end > bytes.len() as u64)
            {
                return Err(bad(
                    path,
                    format!("segment {i}: file range is outside the file (truncated image?)"),
                ));
            }
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
        })
    }

    /// Copies the segments into guest memory (bss stays zero: guest memory is fresh).
    pub fn load(&self, mem: &GuestMemoryMmap) -> Result<()> {
        let mut file = File::open(&self.path).map_err(|e| VmmError::ImageUnreadable {
            path: self.path.clone(),
            source: e,
        })?;
        Elf::load(mem, None, &mut file, Some(GuestAddress(IMAGE_BASE)))
            .map_err(|e| bad(&self.path, format!("loading failed: {e}")))?;
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
        let full = elf_bytes(
            2,
            elf::EM_X86_64,
            elf::ET_EXEC,
            (0x10_0000, 0x1000, RX),
            0x10_0000,
        );
        let mut rng = crate::testing::Rng::new(0x5eed);
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut bytes = full.clone();
            // Only the headers matter to validation: mutate the first 128 bytes.
            rng.mutate(&mut bytes[..128]);
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
            }
        }
        assert!(
            accepted > 0,
            "some mutations (e.g. of padding) must stay valid"
        );
    }
}
