//! The `vfs` component: a FAT file system over the `blk` interface (the `blkdev`
//! component), serving the `fs` interface. See [`volume`] for what each method does and
//! when data reaches the device.
//!
//! The plain-Rust parts ([`cache`], [`names`], [`codes`], [`volume`]) build without the
//! `guest` feature and are tested on the host by
//! guest-kernel/components/units.

#![no_std]

extern crate alloc;

pub mod cache;
pub mod codes;
pub mod names;
pub mod volume;
