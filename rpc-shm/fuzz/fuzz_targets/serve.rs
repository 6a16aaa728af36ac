//! A real endpoint serving slots written by a hostile peer: any bytes in the rings
//! toward it must produce error replies or nothing, never a panic, and never touch
//! memory outside the region.

#![no_main]

use std::alloc::{alloc_zeroed, Layout as AllocLayout};
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use rpc_shm::slot::{state_of, REPLY_ERR, REPLY_OK, SLOT_WORDS};
use rpc_shm::{Endpoint, Platform, Region};

#[path = "probe.rs"]
mod probe_iface;
use probe_iface::{probe, words, Impl};

const SIZE: usize = 1 << 20;

struct NoWait;
impl Platform for NoWait {
    fn relax(&self) {}
    fn sleep(&self, _: u64) {}
    fn doorbell(&self, _: u32) {}
}

fn region() -> Region {
    thread_local! {
        static BASE: usize = {
            // SAFETY: non-zero size; leaked on purpose (one region per fuzz thread).
            unsafe { alloc_zeroed(AllocLayout::from_size_align(SIZE, 4096).unwrap()) as usize }
        };
    }
    let base = BASE.with(|b| *b) as *mut u8;
    // SAFETY: the block is never freed and only accessed through rpc-shm's atomics.
    unsafe { Region::init(base, SIZE, 3) }.unwrap()
}

static SERVER: probe::Server<Impl> = probe::Server(Impl);

fuzz_target!(|data: &[u8]| {
    let region = region();
    let ep = Endpoint::new(region, 0, NoWait).unwrap();
    ep.register(probe::ID, &SERVER).unwrap();
    // Each 65-byte record: which peer writes (1 or 2), then 64 bytes into that peer's
    // next slot toward compartment 0 (its seq counts the records it sent).
    let mut sent = [0u32; 3];
    for rec in data.chunks(65) {
        let from = 1 + (rec[0] & 1) as u32;
        let seq = sent[from as usize];
        sent[from as usize] += 1;
        let slot: [u64; SLOT_WORDS] = words(&rec[1..]);
        let off = region.layout().slot_offset(from, 0, seq) as usize;
        // SAFETY: a slot inside the region, 64-byte aligned, accessed atomically.
        let raw = unsafe { &*(region.base().add(off) as *const [AtomicU64; SLOT_WORDS]) };
        for (i, w) in slot.iter().enumerate().rev() {
            raw[i].store(*w, Ordering::Release);
        }
        let before = raw[0].load(Ordering::Acquire);
        // Serve whatever is pending on either ring (poll only ever writes replies).
        for _ in 0..8 {
            if !ep.poll() {
                break;
            }
        }
        let after = raw[0].load(Ordering::Acquire);
        assert!(after == before || matches!(state_of(after), REPLY_OK | REPLY_ERR));
    }
});
