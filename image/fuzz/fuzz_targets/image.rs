//! Image files: ELF validation, loading into guest memory, then the component table
//! read from the same bytes. Whatever is accepted must obey the rules the loader and the
//! page tables rely on, and loading it writes only inside its accepted segments.
//!
//! Each input is tried twice: as a whole file, and as edits (offset, byte pairs) to the
//! headers of a valid minimal image (the test kit's `ElfBuilder`), so the fuzzer spends
//! its time past the ELF magic.

#![no_main]

use std::path::Path;

use flexos_testkit::ElfBuilder;
use flexos_image::elf::{self as image, Image, ImageBytes};
use flexos_image::placement::Catalog;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const LIMIT: u64 = 0x400_0000;

fuzz_target!(|data: &[u8]| {
    check(data.to_vec());
    let mut edited = ElfBuilder::new().build();
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
