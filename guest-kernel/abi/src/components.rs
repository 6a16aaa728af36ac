//! The component table an image exports, and how placement reaches the guest.
//!
//! An image declares its components (`app`, `net`, `callee`, ...) and, for each
//! compartment count it supports, a default split, in a [`ComponentTable`] placed in
//! the ELF section [`COMPONENT_SECTION`]. The monitor reads the section from the file
//! (it never runs guest code to learn it), validates a placement against it, and tells
//! each compartment the result through [`crate::BootInfo::placement`]: component index
//! (position in `components`) -> compartment id.

use crate::boot::{MAX_COMPARTMENTS, MAX_COMPONENTS, NAME_LEN};

/// ELF section holding the image's [`ComponentTable`].
pub const COMPONENT_SECTION: &str = ".flexos.components";
/// "FLEXCOMP" in little-endian ASCII.
pub const COMPONENT_MAGIC: u64 = u64::from_le_bytes(*b"FLEXCOMP");
/// Bumped on every incompatible change to [`ComponentTable`].
pub const COMPONENT_VERSION: u32 = 1;
/// Most default splits an image can declare.
pub const MAX_SPLITS: usize = 8;

/// A NUL-padded name.
pub type Name = [u8; NAME_LEN];

/// Builds a [`Name`] at compile time; panics (a compile error in const context) if
/// `s` is longer than [`NAME_LEN`].
pub const fn name(s: &str) -> Name {
    let b = s.as_bytes();
    assert!(
        b.len() <= NAME_LEN,
        "component and compartment names are at most 16 bytes"
    );
    let mut out = [0u8; NAME_LEN];
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

/// The text of a [`Name`] (up to the first NUL); `None` if it is not UTF-8.
pub fn name_str(n: &Name) -> Option<&str> {
    let end = n.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    core::str::from_utf8(&n[..end]).ok()
}

/// The image's default placement for one compartment count.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Split {
    /// How many compartments this split uses.
    pub compartments: u32,
    pub _reserved: u32,
    /// Component index -> compartment id (only the first `component_count` matter).
    pub placement: [u8; MAX_COMPONENTS],
    /// Compartment names (only the first `compartments` matter).
    pub names: [Name; MAX_COMPARTMENTS],
}

impl Split {
    pub const EMPTY: Split = Split {
        compartments: 0,
        _reserved: 0,
        placement: [0; MAX_COMPONENTS],
        names: [[0; NAME_LEN]; MAX_COMPARTMENTS],
    };
}

/// What an image exports in [`COMPONENT_SECTION`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ComponentTable {
    pub magic: u64,
    pub version: u32,
    pub component_count: u32,
    pub split_count: u32,
    pub _reserved: u32,
    pub components: [Name; MAX_COMPONENTS],
    pub splits: [Split; MAX_SPLITS],
}

impl ComponentTable {
    pub const EMPTY: ComponentTable = ComponentTable {
        magic: COMPONENT_MAGIC,
        version: COMPONENT_VERSION,
        component_count: 0,
        split_count: 0,
        _reserved: 0,
        components: [[0; NAME_LEN]; MAX_COMPONENTS],
        splits: [Split::EMPTY; MAX_SPLITS],
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(core::mem::size_of::<Split>(), 8 + 32 + 16 * 16);
        assert_eq!(
            core::mem::size_of::<ComponentTable>(),
            24 + 32 * 16 + 8 * 296
        );
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(name_str(&name("netdev")), Some("netdev"));
        assert_eq!(
            name_str(&name("0123456789abcdef")),
            Some("0123456789abcdef")
        );
    }
}
