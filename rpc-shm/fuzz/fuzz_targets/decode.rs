//! The callee-side decoder on arbitrary slot contents: `decode_slot` must never panic,
//! accept only well-formed requests, and the generated server must validate every
//! argument without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_shm::slot::{decode_slot, Incoming, REQUEST, SLOT_WORDS};
use rpc_shm::{Dispatch, GateError, Layout};

#[path = "probe.rs"]
mod probe_iface;
use probe_iface::{probe, words, Impl};

const LAYOUT: Layout = match Layout::new(1 << 20, 3) {
    Ok(l) => l,
    Err(_) => panic!("bad fuzz layout"),
};

fuzz_target!(|data: &[u8]| {
    // 4 bytes: the seq the callee expects; then up to 64 bytes of slot.
    let Some((seq, slot)) = data.split_first_chunk::<4>() else {
        return;
    };
    let expected = u32::from_le_bytes(*seq);
    let slot: [u64; SLOT_WORDS] = words(slot);
    let heap = LAYOUT.channel_heap(1, 2);
    match decode_slot(&slot, expected) {
        Incoming::Nothing => {}
        Incoming::Reject(e) => assert_eq!(e, GateError::BadSlot),
        Incoming::Call(req) => {
            // Only a REQUEST with the expected seq is accepted, and losslessly.
            assert_eq!(slot[0] as u32, REQUEST);
            assert_eq!(req.seq, expected);
            assert_eq!(req.encode(), slot);
            let answer = if req.iface == probe::ID {
                probe::Server(Impl).dispatch(req.method, &req.args, &heap)
            } else {
                Err(GateError::UnknownInterface)
            };
            if let Err(e) = answer {
                assert!(matches!(
                    e,
                    GateError::UnknownInterface
                        | GateError::UnknownMethod
                        | GateError::BadArgument
                        | GateError::BadHandle
                ));
            }
        }
    }
});
