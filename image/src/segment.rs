//! A loaded part of the image as the address space sees it: a page-aligned range and
//! its access rights. The ELF parser produces these; the layout and the page tables
//! consume them without depending on the parser.

/// Access rights of one loadable segment, from its `p_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPerms {
    pub write: bool,
    pub exec: bool,
}

/// One `PT_LOAD` segment, page-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    /// End of the segment in memory (`p_vaddr + p_memsz`), rounded up to a page.
    pub end: u64,
    pub perms: SegmentPerms,
}
