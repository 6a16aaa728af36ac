//! The wire format of one ring slot (one 64-byte cache line = 8 little-endian u64
//! words) and the pure functions that encode and decode it.
//!
//! ```text
//! word 0  control   state: u32 (low half) | seq: u32 (high half)   <- published last
//! word 1  request:  iface: u16 | method: u16 << 16 | 0 (bits 32..64 reserved, zero)
//!         reply:    the u64 result (REPLY_OK) or a GateError code (REPLY_ERR)
//! word 2..8         six u64 arguments
//! ```
//!
//! Ownership follows the state: the caller owns a slot in `EMPTY`, `REPLY_OK` and
//! `REPLY_ERR` and is the only writer of `EMPTY` and `REQUEST`; the callee owns it in
//! `REQUEST` and is the only writer of `REPLY_*`. `seq` is the caller's running call
//! number on that ring; the callee accepts only the seq it expects next, so a request
//! still in flight (nested calls can fill the whole ring) is never taken twice, and
//! echoes it in the reply.
//!
//! Everything a peer wrote is untrusted: the callee copies the words into private
//! memory once and decodes the copy ([`decode_slot`]); no value of any word can make
//! it panic or stall.

use crate::error::GateError;

/// Words per slot.
pub const SLOT_WORDS: usize = 8;
/// Arguments per call.
pub const ARGS: usize = 6;

/// The slot is free (owned by the caller).
pub const EMPTY: u32 = 0;
/// A request is posted (owned by the callee).
pub const REQUEST: u32 = 1;
/// The callee replied with a value in word 1 (owned by the caller).
pub const REPLY_OK: u32 = 2;
/// The callee replied with a [`GateError`] code in word 1 (owned by the caller).
pub const REPLY_ERR: u32 = 3;

/// Bits of word 1 of a request that must be zero.
const RESERVED_MASK: u64 = !0xFFFF_FFFF;

/// Builds a control word.
#[inline(always)]
pub const fn control(state: u32, seq: u32) -> u64 {
    state as u64 | (seq as u64) << 32
}

/// The state half of a control word.
#[inline(always)]
pub const fn state_of(control: u64) -> u32 {
    control as u32
}

/// The seq half of a control word.
#[inline(always)]
pub const fn seq_of(control: u64) -> u32 {
    (control >> 32) as u32
}

/// A decoded request. Interface and method ids are checked later, against the
/// callee's server table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub seq: u32,
    pub iface: u16,
    pub method: u16,
    pub args: [u64; ARGS],
}

impl Request {
    /// The slot words that post this request (word 0 last when storing).
    #[inline]
    pub const fn encode(&self) -> [u64; SLOT_WORDS] {
        let a = self.args;
        [
            control(REQUEST, self.seq),
            self.iface as u64 | (self.method as u64) << 16,
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5],
        ]
    }
}

/// Is the control word at the callee's next slot worth reading further?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing for the callee: the slot is free, holds a reply, or holds an earlier
    /// request still in flight.
    NotYet,
    /// A request with the expected seq.
    Request,
    /// A state no honest caller writes: answer it with [`GateError::BadSlot`] and move
    /// on, so a scribbling caller cannot wedge its own ring or the callee.
    Garbage,
}

/// Classifies the control word of the callee's next slot; `expected` is the seq the
/// callee expects next on that ring.
#[inline(always)]
pub const fn classify(control: u64, expected: u32) -> Turn {
    match state_of(control) {
        EMPTY | REPLY_OK | REPLY_ERR => Turn::NotYet,
        REQUEST if seq_of(control) == expected => Turn::Request,
        REQUEST => Turn::NotYet,
        _ => Turn::Garbage,
    }
}

/// What the callee does with a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Not its turn; leave the slot alone.
    Nothing,
    /// A well-formed request: look up the interface and dispatch.
    Call(Request),
    /// A malformed slot: reply with this error (echoing `expected` as seq) and advance.
    Reject(GateError),
}

/// The callee-side decoder: validates every field a peer can write in a slot copied
/// into private memory. Never panics, for any input.
#[inline]
pub const fn decode_slot(words: &[u64; SLOT_WORDS], expected: u32) -> Incoming {
    match classify(words[0], expected) {
        Turn::NotYet => Incoming::Nothing,
        Turn::Garbage => Incoming::Reject(GateError::BadSlot),
        Turn::Request => match decode_request(words) {
            Ok(r) => Incoming::Call(r),
            Err(e) => Incoming::Reject(e),
        },
    }
}

/// Decodes a slot that must hold a request (state `REQUEST`, reserved bits zero).
#[inline]
pub const fn decode_request(words: &[u64; SLOT_WORDS]) -> Result<Request, GateError> {
    if state_of(words[0]) != REQUEST || words[1] & RESERVED_MASK != 0 {
        return Err(GateError::BadSlot);
    }
    Ok(Request {
        seq: seq_of(words[0]),
        iface: words[1] as u16,
        method: (words[1] >> 16) as u16,
        args: [words[2], words[3], words[4], words[5], words[6], words[7]],
    })
}

/// Words 0 and 1 of the reply to the request with `seq` (store word 1 first).
#[inline]
pub const fn encode_reply(seq: u32, result: Result<u64, GateError>) -> (u64, u64) {
    match result {
        Ok(v) => (control(REPLY_OK, seq), v),
        Err(e) => (control(REPLY_ERR, seq), e.code()),
    }
}

/// The caller's view of its slot while it waits for the reply to `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Still the request: keep waiting.
    Pending,
    /// The callee answered (or scribbled: [`GateError::BadReply`]).
    Done(Result<u64, GateError>),
}

/// Decodes the reply in a slot whose control word is `control`; `value` is word 1,
/// read only after `control` (acquire) shows a reply.
#[inline(always)]
pub fn decode_reply(control: u64, expected: u32, value: impl FnOnce() -> u64) -> Reply {
    if seq_of(control) != expected {
        return Reply::Done(Err(GateError::BadReply));
    }
    match state_of(control) {
        REQUEST => Reply::Pending,
        REPLY_OK => Reply::Done(Ok(value())),
        REPLY_ERR => Reply::Done(Err(match GateError::from_code(value()) {
            Some(e) => e,
            None => GateError::BadReply,
        })),
        _ => Reply::Done(Err(GateError::BadReply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = Request {
            seq: 0xDEAD_BEEF,
            iface: 7,
            method: 0xFFFF,
            args: [1, 2, 3, 4, 5, u64::MAX],
        };
        assert_eq!(decode_slot(&r.encode(), 0xDEAD_BEEF), Incoming::Call(r));
        assert_eq!(decode_slot(&r.encode(), 0xDEAD_BEEE), Incoming::Nothing);
    }

    #[test]
    fn rejects_malformed() {
        let r = Request {
            seq: 3,
            iface: 1,
            method: 2,
            args: [0; 6],
        };
        let mut w = r.encode();
        w[1] |= 1 << 40;
        assert_eq!(decode_slot(&w, 3), Incoming::Reject(GateError::BadSlot));
        let mut w = r.encode();
        w[0] = control(77, 3);
        assert_eq!(decode_slot(&w, 3), Incoming::Reject(GateError::BadSlot));
        w[0] = control(77, 12345);
        assert_eq!(decode_slot(&w, 3), Incoming::Reject(GateError::BadSlot));
        for s in [EMPTY, REPLY_OK, REPLY_ERR] {
            w[0] = control(s, 3);
            assert_eq!(decode_slot(&w, 3), Incoming::Nothing);
        }
        assert_eq!(decode_request(&[0; 8]), Err(GateError::BadSlot));
    }

    #[test]
    fn replies() {
        let (c, v) = encode_reply(9, Ok(42));
        assert_eq!(decode_reply(c, 9, || v), Reply::Done(Ok(42)));
        let (c, v) = encode_reply(9, Err(GateError::UnknownMethod));
        assert_eq!(
            decode_reply(c, 9, || v),
            Reply::Done(Err(GateError::UnknownMethod))
        );
        assert_eq!(
            decode_reply(c, 9, || 0),
            Reply::Done(Err(GateError::BadReply))
        );
        assert_eq!(
            decode_reply(c, 8, || v),
            Reply::Done(Err(GateError::BadReply))
        );
        assert_eq!(decode_reply(control(REQUEST, 9), 9, || 0), Reply::Pending);
        assert_eq!(
            decode_reply(control(EMPTY, 9), 9, || 0),
            Reply::Done(Err(GateError::BadReply))
        );
    }
}
