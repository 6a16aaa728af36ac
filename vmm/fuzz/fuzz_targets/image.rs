//! Image files: ELF validation, then the component table read from the same bytes.
//! Whatever is accepted must obey the rules the loader and the page tables rely on.
//!
//! Each input is tried twice: as a whole file, and as edits (offset, byte pairs) to the
//! headers of a valid minimal image (the test kit's `ElfBuilder`), so the fuzzer spends
//! its time past the ELF magic.

#![no_main]

use std::path::Path;

use flexos_testkit::ElfBuilder;
use flexos_vmm::image::{Image, ImageBytes};
use flexos_vmm::placement::Catalog;
use libfuzzer_sys::fuzz_target;

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

fn check(bytes: Vec<u8>) {
    let Ok(image) = Image::from_bytes(Path::new("fuzz.elf"), ImageBytes::Owned(bytes), LIMIT)
    else {
        return;
    };
    for s in &image.segments {
        assert!(s.start >= 0x10_0000 && s.end <= LIMIT && s.start < s.end);
        assert!(!(s.perms.write && s.perms.exec));
    }
    assert!(image
        .segments
        .iter()
        .any(|s| s.perms.exec && (s.start..s.end).contains(&image.entry)));
    if let Ok(catalog) = Catalog::from_image(&image) {
        for split in &catalog.splits {
            assert_eq!(split.assignment.len(), catalog.components.len());
        }
    }
}
