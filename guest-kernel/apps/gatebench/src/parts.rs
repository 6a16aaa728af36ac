//! gatebench's components and the interfaces they serve.
//!
//! - `bench` (entry): runs the measurements; serves `bench_cb`, the callback the
//!   `gate-nested` case calls back into;
//! - `callee`: the far end of every remote case;
//! - `relay1`, `relay2`: hops of the `gate-chain` case (`relay1 -> relay2 -> callee`);
//!   `relay1.nop` is the co-located case when relay1 shares bench's compartment.
//!
//! The two relays speak the same protocol but under two interface ids (`relay1` = 2,
//! `relay2` = 3): an interface id names one server in the image, so a remote call can
//! say which relay it means even when both share a compartment.
//!
//! Server methods cannot return a `GateError` (the wire type of each method is fixed),
//! so a hop whose onward call fails returns [`FAILED`] `| code`; callers check every
//! value exactly, so a failure anywhere shows up as a wrong result with its code.

use flexos_kernel::gate::{self, router};
use flexos_kernel::rpc::{self, GateError, SharedBuf, SharedBytes};

use crate::{BENCH, CALLEE, RELAY2};

/// Marks a result that is a [`GateError`] code, not a value.
pub const FAILED: u64 = 0xFFFF_FFFF_FFFF_FF00;

/// `Ok(v)` as `v`, an error as [`FAILED`] `| code`.
fn flatten(result: Result<u64, GateError>) -> u64 {
    result.unwrap_or_else(|e| FAILED | e.code())
}

/// `v + 1`, unless `v` already reports a failure.
fn plus_one(v: u64) -> u64 {
    if v & FAILED == FAILED { v } else { v + 1 }
}

rpc::interface! {
    /// The callee of every remote case.
    pub mod callee (id = 1) {
        /// Does nothing; returns 0.
        fn nop() -> u64 = 0;
        /// Returns the sum of its six arguments.
        fn sum6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 = 1;
        /// Reads the whole buffer and returns its [`checksum`](super::checksum).
        fn touch(buf: SharedBuf) -> u64 = 2;
        /// Calls back into bench (`bench_cb.ping(x)`) and returns its result + 1.
        fn nested(x: u64) -> u64 = 3;
    }
}

rpc::interface! {
    /// What bench serves: the callback of the `gate-nested` case.
    pub mod bench_cb (id = 4) {
        /// Returns `x + 1`.
        fn ping(x: u64) -> u64 = 0;
    }
}

/// Declares a relay interface under its own id.
macro_rules! relay_interface {
    ($(#[$meta:meta])* $name:ident = $id:literal) => {
        rpc::interface! {
            $(#[$meta])*
            pub mod $name (id = $id) {
                /// Does nothing; returns 0 (the co-located case).
                fn nop() -> u64 = 0;
                /// Calls the next hop and returns its result + 1.
                fn forward() -> u64 = 1;
            }
        }
    };
}

relay_interface!(
    /// The first hop of the chain: forwards to relay2.
    relay1 = 2
);
relay_interface!(
    /// The second hop of the chain: forwards to callee.
    relay2 = 3
);

/// Start value of [`checksum`].
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// One step of [`checksum`]: an order-sensitive mix of one 64-bit word.
#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).rotate_left(23).wrapping_mul(0x100_0000_01B3)
}

/// [`mix`] over `bytes` as little-endian 64-bit words, a short tail zero-padded.
#[inline(always)]
fn mix_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(w);
        h = mix(h, u64::from_le_bytes(le));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut le = [0u8; 8];
        le[..tail.len()].copy_from_slice(tail);
        h = mix(h, u64::from_le_bytes(le));
    }
    h
}

/// The checksum `touch` returns, here over a private slice: bench computes the
/// expected value from its own copy of the pattern.
pub fn checksum(bytes: &[u8]) -> u64 {
    mix_bytes(SEED, bytes)
}

/// [`checksum`] of shared bytes, copied out chunk by chunk into private memory (a peer
/// may change them under us; only the private copy is looked at). Chunks are whole
/// words, so the result equals [`checksum`] of the same bytes.
fn checksum_shared(bytes: SharedBytes<'_>) -> u64 {
    let mut chunk = [0u8; 512];
    let mut h = SEED;
    let mut at = 0;
    while at < bytes.len() {
        let n = (bytes.len() - at).min(chunk.len());
        if let Err(e) = bytes.read(at, &mut chunk[..n]) {
            return FAILED | e.code();
        }
        h = mix_bytes(h, &chunk[..n]);
        at += n;
    }
    h
}

pub struct Callee;

impl callee::Api for Callee {
    #[inline(never)]
    fn nop(&self) -> u64 {
        0
    }

    #[inline(never)]
    fn sum6(&self, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
        a.wrapping_add(b)
            .wrapping_add(c)
            .wrapping_add(d)
            .wrapping_add(e)
            .wrapping_add(f)
    }

    fn touch(&self, buf: SharedBuf) -> u64 {
        match gate::bytes(buf) {
            Ok(bytes) => checksum_shared(bytes),
            Err(e) => FAILED | e.code(),
        }
    }

    fn nested(&self, x: u64) -> u64 {
        let bench = bench_cb::Client::new(router(), BENCH, &BENCH_CB_SERVER.0);
        plus_one(flatten(bench.ping(x)))
    }
}

pub struct BenchCb;

impl bench_cb::Api for BenchCb {
    fn ping(&self, x: u64) -> u64 {
        x.wrapping_add(1)
    }
}

pub struct Relay1;

impl relay1::Api for Relay1 {
    #[inline(never)]
    fn nop(&self) -> u64 {
        0
    }

    fn forward(&self) -> u64 {
        let next = relay2::Client::new(router(), RELAY2, &RELAY2_SERVER.0);
        plus_one(flatten(next.forward()))
    }
}

pub struct Relay2;

impl relay2::Api for Relay2 {
    #[inline(never)]
    fn nop(&self) -> u64 {
        0
    }

    fn forward(&self) -> u64 {
        let next = callee::Client::new(router(), CALLEE, &CALLEE_SERVER.0);
        plus_one(flatten(next.nop()))
    }
}

// One instance per component in every compartment: the server registered where the
// component is placed, and the local instance its clients call when co-located.
pub static CALLEE_SERVER: callee::Server<Callee> = callee::Server(Callee);
pub static BENCH_CB_SERVER: bench_cb::Server<BenchCb> = bench_cb::Server(BenchCb);
pub static RELAY1_SERVER: relay1::Server<Relay1> = relay1::Server(Relay1);
pub static RELAY2_SERVER: relay2::Server<Relay2> = relay2::Server(Relay2);

flexos_kernel::servers! {
    crate::BENCH => bench_cb(BENCH_CB_SERVER),
    crate::CALLEE => callee(CALLEE_SERVER),
    crate::RELAY1 => relay1(RELAY1_SERVER),
    crate::RELAY2 => relay2(RELAY2_SERVER),
}
