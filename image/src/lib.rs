//! The guest image as the monitor and its tools read it, with no KVM in sight: the ELF
//! file validated and loaded into guest memory ([`elf`]), its component table and the
//! placements built from it ([`placement`]), and its symbols for reports ([`symbols`]).
//! The monitor (`flexos-vmm`), the design-space explorer (`flexos-explore`) and the fuzz
//! targets share it, so an image means the same thing to all of them.

pub mod elf;
pub mod error;
pub mod input_file;
pub mod placement;
pub mod segment;
pub mod symbols;

pub use elf::{Image, ImageBytes};
pub use error::{ImageError, PlacementError, Result, TableError};
pub use placement::{Catalog, CompartmentPlan, Placement};
pub use segment::{Segment, SegmentPerms};
pub use symbols::Symbolizer;
