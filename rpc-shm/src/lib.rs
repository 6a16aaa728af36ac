//! Shared-memory RPC between compartments (DESIGN section 5).
//!
//! This crate is used by BOTH sides: the monitor maps the shared region into every
//! compartment and initialises its header, and the guest kernel's gate layer places
//! calls in it. It will hold the region layout (header with magic, version and
//! per-compartment state including a dead flag), the lock-free single-producer /
//! single-consumer call rings (one per ordered compartment pair, one cache line per
//! call), the per-compartment shared-heap arenas with typed handles, and the
//! validation of every field a peer can write.
//!
//! It knows nothing about KVM, so it is tested on the host with real threads.
//!
//! Status: the foundation issue only reserves the crate and the shared region
//! (`flexos_abi::SHARED_BASE`); the compartments issue fills it.

#![no_std]
