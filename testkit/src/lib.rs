//! Test inputs shared by every test in the host workspace and by the fuzz targets, so
//! that each exists once:
//!
//! - [`ElfBuilder`]: a minimal ELF (one `PT_LOAD`) whose fields can be bent one at a
//!   time, to feed the monitor bad images (unit tests, end-to-end tests, fuzz seeds);
//! - [`frames`]: Ethernet frames (UDP/IPv4, TCP segments such as SYNs) for the network
//!   tests;
//! - [`Rng`]: a small deterministic PRNG for mutation and stress tests (no fuzzing crate
//!   in the normal test run).

mod elf_builder;
pub mod frames;
mod netns;
mod rng;

pub use elf_builder::{elf, ElfBuilder, IMAGE_BASE};
pub use netns::in_private_netns;
pub use rng::Rng;
