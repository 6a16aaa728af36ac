//! An interface with every kind of gate-safe argument, shared by the fuzz targets.

use rpc_shm::SharedBuf;

rpc_shm::gate_enum! {
    pub enum Mode { Read = 0, Write = 1, Append = 9 }
}

rpc_shm::interface! {
    pub mod probe (id = 3) {
        fn all(a: u8, b: i16, c: bool, d: SharedBuf, e: Mode, f: u64) -> u64 = 0;
        fn wide(a: i64, b: usize, c: u32, d: i8, e: u16, f: ()) -> i32 = 1;
        fn none() -> () = 7;
    }
}

pub struct Impl;

impl probe::Api for Impl {
    fn all(&self, a: u8, b: i16, c: bool, d: SharedBuf, e: Mode, f: u64) -> u64 {
        (a as u64)
            .wrapping_add(b as u64)
            .wrapping_add(c as u64)
            .wrapping_add(d.len() as u64)
            .wrapping_add(e as u64)
            .wrapping_add(f)
    }
    fn wide(&self, a: i64, b: usize, c: u32, d: i8, e: u16, _f: ()) -> i32 {
        (a as i32) ^ (b as i32) ^ (c as i32) ^ (d as i32) ^ (e as i32)
    }
    fn none(&self) {}
}

/// Little-endian u64 words from bytes (missing bytes read as zero).
pub fn words<const N: usize>(data: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (w, chunk) in out.iter_mut().zip(data.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    out
}
