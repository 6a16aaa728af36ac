//! Image files: ELF validation, loading into guest memory, then the component table
//! read from the same bytes. Whatever is accepted must obey the rules the loader and the
//! page tables rely on, and loading it writes only inside its accepted segments.
//!
//! Each input is tried twice: as a whole file, and as edits (offset, byte pairs) to a
//! valid minimal image, so the fuzzer spends its time past the ELF magic.

#![no_main]

use std::path::Path;

use flexos_vmm::image::{self, Image, ImageBytes};
use flexos_vmm::placement::Catalog;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const LIMIT: u64 = 0x400_0000;

/// A valid image: ELF64 header, one R+X PT_LOAD of one page at 1 MiB holding `ud2`.
fn template() -> Vec<u8> {
    let mut b = vec![0u8; 0x1010];
    b[..4].copy_from_slice(b"\x7fELF");
    (b[4], b[5], b[6]) = (2, 1, 1);
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes()); // entry
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    b[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    b[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
    b[ph + 16..ph + 24].copy_from_slice(&0x10_0000u64.to_le_bytes());
    b[ph + 24..ph + 32].copy_from_slice(&0x10_0000u64.to_le_bytes());
    b[ph + 32..ph + 40].copy_from_slice(&16u64.to_le_bytes());
    b[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
    b[0x1000..0x1002].copy_from_slice(&[0x0f, 0x0b]);
    b
}

fuzz_target!(|data: &[u8]| {
    check(data.to_vec());
    let mut edited = template();
    for pair in data.chunks_exact(2) {
        let at = pair[0] as usize % 128;
        edited[at] = pair[1];
    }
    check(edited);
});

thread_local! {
    /// Guest memory up to LIMIT, reused across inputs (fresh pages are never touched).
    static MEMORY: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), LIMIT as usize)]).expect("guest memory");
}

/// What booting reads of a file (`image::boot_copy`) must hold every byte validation,
/// loading and the component table use: the same image comes out of it.
fn check_boot_copy(bytes: &[u8], full: &Image) {
    let Ok(copy) = image::boot_copy(bytes.len(), |buf, offset| {
        buf.copy_from_slice(&bytes[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }) else {
        return; // an empty file: no mapping, and no image either
    };
    let boot = Image::from_bytes(Path::new("fuzz.elf"), ImageBytes::Copied(copy), LIMIT)
        .expect("the boot copy validates like the file");
    assert_eq!(boot.segments, full.segments);
    assert_eq!(boot.entry, full.entry);
    assert!(boot.chunks().eq(full.chunks()), "loads the file's bytes");
    assert_eq!(
        Catalog::from_image(&boot).ok(),
        Catalog::from_image(full).ok()
    );
}

fn check(bytes: Vec<u8>) {
    let Ok(image) = Image::from_bytes(
        Path::new("fuzz.elf"),
        ImageBytes::Owned(bytes.clone()),
        LIMIT,
    ) else {
        return;
    };
    check_boot_copy(&bytes, &image);
    for s in &image.segments {
        assert!(s.start >= 0x10_0000 && s.end <= LIMIT && s.start < s.end);
        assert!(!(s.perms.write && s.perms.exec));
    }
    assert!(image
        .segments
        .iter()
        .any(|s| s.perms.exec && (s.start..s.end).contains(&image.entry)));
    for (addr, bytes) in image.chunks() {
        let end = addr + bytes.len() as u64;
        assert!(image
            .segments
            .iter()
            .any(|s| s.start <= addr && end <= s.end));
    }
    // The real load path, into memory that ends where the image's may: a write past a
    // segment the checks missed fails the load.
    MEMORY.with(|mem| image.load(mem).expect("an accepted image loads"));
    if let Ok(catalog) = Catalog::from_image(&image) {
        for split in &catalog.splits {
            assert_eq!(split.assignment.len(), catalog.components.len());
        }
    }
}
