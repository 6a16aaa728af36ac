//! A minimal ELF image whose header fields can be bent one at a time.

use std::path::{Path, PathBuf};

/// ELF constants the crafted images use.
pub mod elf {
    pub const ELFCLASS32: u8 = 1;
    pub const ELFCLASS64: u8 = 2;
    pub const ELFDATA2LSB: u8 = 1;
    pub const ELFDATA2MSB: u8 = 2;
    pub const ET_EXEC: u16 = 2;
    pub const ET_DYN: u16 = 3;
    pub const EM_386: u16 = 3;
    pub const EM_X86_64: u16 = 62;
    pub const EM_AARCH64: u16 = 183;
    pub const EM_RISCV: u16 = 243;
    pub const PT_LOAD: u32 = 1;
    pub const PF_X: u32 = 1;
    pub const PF_W: u32 = 2;
    pub const PF_R: u32 = 4;
}

/// Where the image is linked (guest-physical 1 MiB).
pub const IMAGE_BASE: u64 = 0x10_0000;

/// A minimal ELF with one `PT_LOAD` segment whose contents are `code`, at file offset
/// 0x1000. [`ElfBuilder::new`] describes a bootable static x86_64 executable whose entry
/// executes `ud2`; each setter bends one field so a test changes exactly what it tests.
#[derive(Clone, Debug)]
pub struct ElfBuilder {
    pub class: u8,
    pub data: u8,
    pub machine: u16,
    pub e_type: u16,
    pub entry: u64,
    pub vaddr: u64,
    pub memsz: u64,
    pub flags: u32,
    pub code: Vec<u8>,
    /// Extra non-loaded sections (name, contents), ELF64 only: with any, the file gets
    /// a section header table and a `.shstrtab`.
    pub sections: Vec<(String, Vec<u8>)>,
}

impl Default for ElfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ElfBuilder {
    /// Offset of the segment contents in the file.
    const SEGMENT_OFFSET: usize = 0x1000;

    /// A valid x86_64 ET_EXEC: one R+X page at 1 MiB holding `ud2`, entry at its start.
    pub fn new() -> Self {
        ElfBuilder {
            class: elf::ELFCLASS64,
            data: elf::ELFDATA2LSB,
            machine: elf::EM_X86_64,
            e_type: elf::ET_EXEC,
            entry: IMAGE_BASE,
            vaddr: IMAGE_BASE,
            memsz: 0x1000,
            flags: elf::PF_R | elf::PF_X,
            code: vec![0x0f, 0x0b], // ud2
            sections: Vec::new(),
        }
    }

    pub fn class(mut self, class: u8) -> Self {
        self.class = class;
        self
    }

    pub fn machine(mut self, machine: u16) -> Self {
        self.machine = machine;
        self
    }

    pub fn e_type(mut self, e_type: u16) -> Self {
        self.e_type = e_type;
        self
    }

    pub fn entry(mut self, entry: u64) -> Self {
        self.entry = entry;
        self
    }

    /// Moves the segment (and the entry point with it).
    pub fn vaddr(mut self, vaddr: u64) -> Self {
        self.vaddr = vaddr;
        self.entry = vaddr;
        self
    }

    pub fn memsz(mut self, memsz: u64) -> Self {
        self.memsz = memsz;
        self
    }

    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    pub fn code(mut self, code: &[u8]) -> Self {
        self.code = code.to_vec();
        self
    }

    /// Adds a section in the file, flagged SHF_ALLOC like the images' component table
    /// (the monitor reads allocated sections at boot), outside any segment.
    pub fn section(mut self, name: &str, contents: &[u8]) -> Self {
        self.sections.push((name.to_string(), contents.to_vec()));
        self
    }

    /// The file bytes: an ELF32 layout for `ELFCLASS32`, ELF64 otherwise. Multi-byte
    /// fields follow `data` (little- or big-endian).
    pub fn build(&self) -> Vec<u8> {
        let off = Self::SEGMENT_OFFSET;
        let mut b = vec![0u8; off + self.code.len()];
        b[off..].copy_from_slice(&self.code);
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = self.class;
        b[5] = self.data;
        b[6] = 1; // EV_CURRENT
        let be = self.data == elf::ELFDATA2MSB;
        let mut put = |at: usize, bytes: &[u8]| {
            let mut v = bytes.to_vec();
            if be {
                v.reverse();
            }
            b[at..at + v.len()].copy_from_slice(&v);
        };
        let filesz = self.code.len() as u64;
        put(16, &self.e_type.to_le_bytes());
        put(18, &self.machine.to_le_bytes());
        put(20, &1u32.to_le_bytes()); // e_version
        if self.class == elf::ELFCLASS32 {
            let ph = 52usize;
            put(24, &(self.entry as u32).to_le_bytes());
            put(28, &(ph as u32).to_le_bytes()); // e_phoff
            put(40, &52u16.to_le_bytes()); // e_ehsize
            put(42, &32u16.to_le_bytes()); // e_phentsize
            put(44, &1u16.to_le_bytes()); // e_phnum
            put(ph, &elf::PT_LOAD.to_le_bytes());
            put(ph + 4, &(off as u32).to_le_bytes());
            put(ph + 8, &(self.vaddr as u32).to_le_bytes());
            put(ph + 12, &(self.vaddr as u32).to_le_bytes());
            put(ph + 16, &(filesz as u32).to_le_bytes());
            put(ph + 20, &(self.memsz as u32).to_le_bytes());
            put(ph + 24, &self.flags.to_le_bytes());
            put(ph + 28, &0x1000u32.to_le_bytes());
        } else {
            let ph = 64usize;
            put(24, &self.entry.to_le_bytes());
            put(32, &(ph as u64).to_le_bytes()); // e_phoff
            put(52, &64u16.to_le_bytes()); // e_ehsize
            put(54, &56u16.to_le_bytes()); // e_phentsize
            put(56, &1u16.to_le_bytes()); // e_phnum
            put(ph, &elf::PT_LOAD.to_le_bytes());
            put(ph + 4, &self.flags.to_le_bytes());
            put(ph + 8, &(off as u64).to_le_bytes());
            put(ph + 16, &self.vaddr.to_le_bytes());
            put(ph + 24, &self.vaddr.to_le_bytes());
            put(ph + 32, &filesz.to_le_bytes());
            put(ph + 40, &self.memsz.to_le_bytes());
            put(ph + 48, &0x1000u64.to_le_bytes());
        }
        if self.class != elf::ELFCLASS32 && !self.sections.is_empty() {
            self.append_sections(&mut b);
        }
        b
    }

    /// Appends the sections' contents, a `.shstrtab` and the section header table
    /// (null section first, `.shstrtab` last), and points the ELF64 header at them.
    fn append_sections(&self, b: &mut Vec<u8>) {
        const SHT_PROGBITS: u32 = 1;
        const SHT_STRTAB: u32 = 3;
        let mut strtab = vec![0u8];
        // (name offset in strtab, type, file offset, size)
        let mut headers = Vec::new();
        for (name, contents) in &self.sections {
            let name_at = strtab.len() as u32;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            b.resize(b.len().next_multiple_of(8), 0);
            headers.push((name_at, SHT_PROGBITS, b.len() as u64, contents.len() as u64));
            b.extend_from_slice(contents);
        }
        let name_at = strtab.len() as u32;
        strtab.extend_from_slice(b".shstrtab\0");
        headers.push((name_at, SHT_STRTAB, b.len() as u64, strtab.len() as u64));
        b.extend_from_slice(&strtab);
        b.resize(b.len().next_multiple_of(8), 0);
        let shoff = b.len() as u64;
        b.resize(b.len() + 64, 0); // the null section
        for (name, kind, offset, size) in headers.iter().copied() {
            let mut sh = [0u8; 64];
            sh[0..4].copy_from_slice(&name.to_le_bytes());
            sh[4..8].copy_from_slice(&kind.to_le_bytes());
            if kind == SHT_PROGBITS {
                sh[8..16].copy_from_slice(&2u64.to_le_bytes()); // sh_flags: SHF_ALLOC
            }
            sh[24..32].copy_from_slice(&offset.to_le_bytes());
            sh[32..40].copy_from_slice(&size.to_le_bytes());
            sh[48..56].copy_from_slice(&1u64.to_le_bytes()); // sh_addralign
            b.extend_from_slice(&sh);
        }
        let count = headers.len() as u16 + 1;
        b[40..48].copy_from_slice(&shoff.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        b[60..62].copy_from_slice(&count.to_le_bytes()); // e_shnum
        b[62..64].copy_from_slice(&(count - 1).to_le_bytes()); // e_shstrndx
    }

    /// Writes the image into `dir` as `name` and returns its path.
    pub fn write(&self, dir: impl AsRef<Path>, name: &str) -> PathBuf {
        let path = dir.as_ref().join(name);
        std::fs::write(&path, self.build())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf64_header_fields_land_where_the_spec_puts_them() {
        let b = ElfBuilder::new().memsz(0x5000).build();
        assert_eq!(&b[..4], b"\x7fELF");
        assert_eq!(b[4], elf::ELFCLASS64);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), elf::EM_X86_64);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            IMAGE_BASE
        );
        assert_eq!(
            u64::from_le_bytes(b[64 + 40..64 + 48].try_into().unwrap()),
            0x5000
        );
        assert_eq!(&b[0x1000..], &[0x0f, 0x0b]);
    }

    #[test]
    fn sections_get_a_header_table_and_names() {
        let b = ElfBuilder::new().section(".x", b"abc").build();
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
        let (shoff, shnum, strndx) = (u64_at(40), u16_at(60), u16_at(62));
        assert_eq!((u16_at(58), shnum, strndx), (64, 3, 2));
        assert_eq!(b.len(), shoff + 3 * 64);
        let x = shoff + 64;
        assert_eq!(&b[u64_at(x + 24)..u64_at(x + 24) + u64_at(x + 32)], b"abc");
        let strtab = u64_at(shoff + 2 * 64 + 24);
        let name = strtab + u32::from_le_bytes(b[x..x + 4].try_into().unwrap()) as usize;
        assert_eq!(&b[name..name + 3], b".x\0");
        // Without sections nothing changes.
        assert_eq!(u64_at_plain(&ElfBuilder::new().build(), 40), 0);
    }

    fn u64_at_plain(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn elf32_uses_the_32_bit_layout() {
        let b = ElfBuilder::new().class(elf::ELFCLASS32).build();
        assert_eq!(u16::from_le_bytes([b[42], b[43]]), 32); // e_phentsize
        assert_eq!(
            u32::from_le_bytes(b[52 + 8..52 + 12].try_into().unwrap()),
            0x10_0000
        );
    }
}
