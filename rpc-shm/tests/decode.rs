//! The callee-side decoder against a reference model, on a million random slots, and
//! the generated server's argument validation on every decoded call.

mod common;

use common::Rng;
use rpc_shm::slot::{
    control, decode_slot, Incoming, Request, ARGS, EMPTY, REPLY_ERR, REPLY_OK, REQUEST, SLOT_WORDS,
};
use rpc_shm::{Dispatch, GateError, GateSafe, HeapBounds, Layout, SharedBuf};

rpc_shm::gate_enum! {
    #[derive(Debug, PartialEq)]
    pub enum Mode { Read = 0, Write = 1, Append = 9 }
}

rpc_shm::interface! {
    /// Every kind of argument.
    pub mod probe (id = 7) {
        fn all(a: u8, b: i16, c: bool, d: SharedBuf, e: Mode, f: u64) -> u64 = 0;
        fn none() -> () = 1;
        fn small(x: i8) -> i8 = 300;
    }
}

struct Impl;

impl probe::Api for Impl {
    fn all(&self, a: u8, b: i16, c: bool, d: SharedBuf, e: Mode, f: u64) -> u64 {
        (a as u64)
            .wrapping_add(b as u64)
            .wrapping_add(c as u64)
            .wrapping_add(d.len() as u64)
            .wrapping_add(e as u64)
            .wrapping_add(f)
    }
    fn none(&self) {}
    fn small(&self, x: i8) -> i8 {
        x.wrapping_neg()
    }
}

/// What the decoder must do with `w` when the callee expects `expected`.
fn model_decode(w: &[u64; SLOT_WORDS], expected: u32) -> Incoming {
    let state = w[0] as u32;
    let seq = (w[0] >> 32) as u32;
    match state {
        EMPTY | REPLY_OK | REPLY_ERR => Incoming::Nothing,
        REQUEST if seq != expected => Incoming::Nothing,
        REQUEST if w[1] >> 32 != 0 => Incoming::Reject(GateError::BadSlot),
        REQUEST => Incoming::Call(Request {
            seq,
            iface: w[1] as u16,
            method: (w[1] >> 16) as u16,
            args: [w[2], w[3], w[4], w[5], w[6], w[7]],
        }),
        _ => Incoming::Reject(GateError::BadSlot),
    }
}

/// What the server table + generated server must answer.
fn model_dispatch(req: &Request, heap: &HeapBounds) -> Result<u64, GateError> {
    if req.iface != probe::ID {
        return Err(GateError::UnknownInterface);
    }
    let a = &req.args;
    match req.method {
        0 => {
            let bad = GateError::BadArgument;
            let u8_ok = a[0] <= 255;
            let i16_ok = (i16::MIN as i64..=i16::MAX as i64).contains(&(a[1] as i64));
            let bool_ok = a[2] <= 1;
            let (off, len) = (a[3] as u32 as u64, a[3] >> 32);
            let buf_ok = off >= heap.offset() as u64
                && off + len <= heap.offset() as u64 + heap.size() as u64;
            let mode_ok = matches!(a[4], 0 | 1 | 9);
            if !u8_ok || !i16_ok || !bool_ok {
                return Err(bad);
            }
            if !buf_ok {
                return Err(GateError::BadHandle);
            }
            if !mode_ok {
                return Err(bad);
            }
            Ok((a[0])
                .wrapping_add(a[1] as i16 as u64)
                .wrapping_add(a[2])
                .wrapping_add(len)
                .wrapping_add(a[4])
                .wrapping_add(a[5]))
        }
        1 => Ok(0),
        300 => {
            let x = a[0] as i64;
            if (-128..=127).contains(&x) {
                Ok((x as i8).wrapping_neg() as i64 as u64)
            } else {
                Err(GateError::BadArgument)
            }
        }
        _ => Err(GateError::UnknownMethod),
    }
}

/// A random word biased towards interesting values.
fn word(rng: &mut Rng, heap: &HeapBounds) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => rng.below(512),
        4 => (-(rng.below(40_000) as i64)) as u64,
        5 => {
            // A handle near the heap's edges.
            let off = heap.offset() as u64 + rng.below(heap.size() as u64 + 64) - 32;
            let len = rng.below(8192);
            off | len << 32
        }
        6 => rng.below(12),
        _ => rng.next(),
    }
}

#[test]
fn decoder_matches_model_on_random_slots() {
    let heap = Layout::new(1 << 20, 3).unwrap().channel_heap(1, 2);
    let server = probe::Server(Impl);
    let mut rng = Rng::new(0x1234_5678_9ABC_DEF1);
    let (mut calls, mut oks) = (0u32, 0u32);
    for i in 0..1_000_000u32 {
        let expected = rng.next() as u32;
        let mut w = [0u64; SLOT_WORDS];
        if i % 4 == 0 {
            // Pure noise.
            for x in &mut w {
                *x = rng.next();
            }
        } else {
            let state = match rng.below(6) {
                0 => EMPTY,
                1 => REPLY_OK,
                2 => REPLY_ERR,
                3 => rng.next() as u32,
                _ => REQUEST,
            };
            let seq = match rng.below(4) {
                0 => rng.next() as u32,
                1 => expected.wrapping_add(rng.below(3) as u32).wrapping_sub(1),
                _ => expected,
            };
            w[0] = control(state, seq);
            let iface = if rng.below(4) == 0 {
                rng.next() as u16
            } else {
                probe::ID
            };
            let method = [0, 0, 1, 300, 2, rng.next() as u16][rng.below(6) as usize];
            w[1] = iface as u64 | (method as u64) << 16;
            if rng.below(8) == 0 {
                w[1] |= rng.next() << 32;
            }
            for x in &mut w[2..] {
                *x = word(&mut rng, &heap);
            }
        }
        let got = decode_slot(&w, expected);
        assert_eq!(
            got,
            model_decode(&w, expected),
            "slot {w:x?} expected seq {expected}"
        );
        if let Incoming::Call(req) = got {
            calls += 1;
            let answer = if req.iface == probe::ID {
                server.dispatch(req.method, &req.args, &heap)
            } else {
                Err(GateError::UnknownInterface)
            };
            assert_eq!(answer, model_dispatch(&req, &heap), "request {req:x?}");
            oks += answer.is_ok() as u32;
        }
    }
    // The generator reaches every branch often enough to mean something.
    assert!(calls > 100_000, "{calls} calls");
    assert!(oks > 20_000, "{oks} successful dispatches");
}

#[test]
fn requests_round_trip() {
    let mut rng = Rng::new(99);
    for _ in 0..100_000 {
        let mut args = [0u64; ARGS];
        for a in &mut args {
            *a = rng.next();
        }
        let r = Request {
            seq: rng.next() as u32,
            iface: rng.next() as u16,
            method: rng.next() as u16,
            args,
        };
        assert_eq!(decode_slot(&r.encode(), r.seq), Incoming::Call(r));
    }
}

#[test]
fn gate_words_round_trip_and_reject() {
    let heap = Layout::new(1 << 20, 2).unwrap().channel_heap(0, 1);
    let mut rng = Rng::new(5);
    for _ in 0..100_000 {
        let w = word(&mut rng, &heap);
        // Whatever the word, decoding never panics, and what decodes re-encodes to
        // the same word.
        if let Ok(v) = u8::from_word(w, &heap) {
            assert_eq!(v.to_word(), w);
        }
        if let Ok(v) = i16::from_word(w, &heap) {
            assert_eq!(v.to_word(), w);
        }
        if let Ok(v) = i32::from_word(w, &heap) {
            assert_eq!(v.to_word(), w);
        }
        if let Ok(v) = bool::from_word(w, &heap) {
            assert_eq!(v.to_word(), w);
        }
        if let Ok(v) = Mode::from_word(w, &heap) {
            assert_eq!(v.to_word(), w);
        }
        match SharedBuf::from_word(w, &heap) {
            Ok(b) => {
                assert_eq!(b.to_word(), w);
                assert!(heap.contains(b.offset(), b.len()));
            }
            Err(e) => assert_eq!(e, GateError::BadHandle),
        }
    }
}
