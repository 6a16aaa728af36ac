//! Component tables (raw bytes from an image section) and placement files (TOML text
//! from the user): neither may panic the monitor, and what passes is consistent.

#![no_main]

use std::path::Path;

use flexos_image::placement::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(catalog) = Catalog::parse(data) {
        for split in &catalog.splits {
            let placed: usize = split.compartments.iter().map(|c| c.components.len()).sum();
            assert_eq!(placed, catalog.components.len());
        }
    }
    let catalog = Catalog {
        components: ["app", "net", "netdev", "vfs"].map(String::from).to_vec(),
        splits: Vec::new(),
    };
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = catalog.placement_from_config(Path::new("fuzz.toml"), text) {
            assert_eq!(p.assignment.len(), catalog.components.len());
            assert!(p
                .assignment
                .iter()
                .all(|&c| (c as usize) < p.compartments.len()));
            assert!(p.compartments.iter().all(|c| !c.components.is_empty()));
        }
    }
});
