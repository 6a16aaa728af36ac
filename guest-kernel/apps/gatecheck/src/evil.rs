//! The `evil` component: writes requests straight into the ring slots toward `victim`,
//! bypassing its endpoint, the way a compromised compartment could.
//!
//! Each [`Attack`] is one hand-made slot: an interface nobody serves, an interface id
//! beyond any server table, a method the interface lacks, shared-buffer handles
//! outside the heap, a `bool` that is 2, a control word in no known state, reserved bits
//! set, and, as a control, one well-formed request. The victim must answer every one
//! with the right error reply (the control with its value) and keep serving others.
//!
//! The ring `evil -> victim` is used by nothing else (evil never calls victim through
//! its endpoint), so this module keeps its own sequence number for it. It speaks the
//! wire format of `rpc_shm::slot`, and touches the region only through atomics.
//!
//! [`Intrusion`]s go further: evil reaches for shared memory that is not its own (the
//! channel between app and victim, the monitor's header page, victim's state page).
//! The monitor maps none of it writable into evil's VM, so each ends the run as an
//! isolation violation naming what was touched; so does asking the monitor to read
//! such memory for evil (a console hypercall whose buffer is in the channel).

use core::arch::asm;
use core::hint::black_box;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use flexos_kernel::components::compartment_of;
use flexos_kernel::rpc::slot::{
    EMPTY, REPLY_ERR, REPLY_OK, Request, SLOT_WORDS, control, seq_of, state_of,
};
use flexos_kernel::rpc::{self, GateError, GateSafe, SharedBuf};
use flexos_kernel::{gate, hypercall, println, time};

use crate::victim::victim;
use crate::{APP, VICTIM};

rpc::gate_enum! {
    /// One hand-made request.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Attack {
        UnknownInterface = 0,
        InterfaceOutOfRange = 1,
        UnknownMethod = 2,
        HandleOutsideHeap = 3,
        HandleWrapsAround = 4,
        BadBool = 5,
        GarbageControlWord = 6,
        ReservedBits = 7,
        WellFormed = 8,
        HandleOtherChannel = 9,
    }
}

rpc::gate_enum! {
    /// One reach beyond evil's own shared memory.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Intrusion {
        /// Write a forged reply into the ring app -> victim.
        ForgeReply = 0,
        /// Read a buffer app allocated for victim (its handle leaked as an integer).
        ReadBuffer = 1,
        /// Set victim's dead flag in the header page.
        SetDead = 2,
        /// Overwrite the region header's magic.
        WriteHeader = 3,
        /// Set victim's sleeping flag in its state page.
        WriteState = 4,
        /// Ask the monitor to print the ring app -> victim (a console hypercall whose
        /// buffer is in their channel).
        PrintChannel = 5,
    }
}

impl Attack {
    /// Every attack, in the order the scenario runs them.
    pub const ALL: [Attack; 10] = [
        Attack::UnknownInterface,
        Attack::InterfaceOutOfRange,
        Attack::UnknownMethod,
        Attack::HandleOutsideHeap,
        Attack::HandleWrapsAround,
        Attack::BadBool,
        Attack::GarbageControlWord,
        Attack::ReservedBits,
        Attack::WellFormed,
        Attack::HandleOtherChannel,
    ];

    /// What the slot holds, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Attack::UnknownInterface => "interface id 42 (nobody serves it)",
            Attack::InterfaceOutOfRange => "interface id 0xffff (beyond every server table)",
            Attack::UnknownMethod => "victim method id 999",
            Attack::HandleOutsideHeap => "victim.measure(SharedBuf at offset 0: the region header)",
            Attack::HandleWrapsAround => "victim.measure(SharedBuf 0xffffffc0+0x100, wraps around)",
            Attack::BadBool => "victim.flag(2) (a bool word that is neither 0 nor 1)",
            Attack::GarbageControlWord => "control word in state 0xdead",
            Attack::ReservedBits => "victim.add with reserved bits set in the id word",
            Attack::WellFormed => "a well-formed victim.add(40, 2)",
            Attack::HandleOtherChannel => {
                "victim.measure(SharedBuf in the heap of the channel between app and victim)"
            }
        }
    }

    /// The reply the victim must give.
    pub fn expected(self) -> RawReply {
        match self {
            Attack::UnknownInterface | Attack::InterfaceOutOfRange => {
                RawReply::Err(GateError::UnknownInterface)
            }
            Attack::UnknownMethod => RawReply::Err(GateError::UnknownMethod),
            Attack::HandleOutsideHeap | Attack::HandleWrapsAround | Attack::HandleOtherChannel => {
                RawReply::Err(GateError::BadHandle)
            }
            Attack::BadBool => RawReply::Err(GateError::BadArgument),
            Attack::GarbageControlWord | Attack::ReservedBits => RawReply::Err(GateError::BadSlot),
            Attack::WellFormed => RawReply::Ok(42),
        }
    }

    /// The slot words for sequence number `seq`.
    fn slot(self, seq: u32) -> [u64; SLOT_WORDS] {
        let request = |iface: u16, method: u16, args: [u64; 6]| {
            Request {
                seq,
                iface,
                method,
                args,
            }
            .encode()
        };
        let buf = |offset, len| SharedBuf::from_parts(offset, len).to_word();
        let v = victim::methods::add;
        match self {
            Attack::UnknownInterface => request(42, 0, [0; 6]),
            Attack::InterfaceOutOfRange => request(0xFFFF, 0, [0; 6]),
            Attack::UnknownMethod => request(victim::ID, 999, [0; 6]),
            Attack::HandleOutsideHeap => request(
                victim::ID,
                victim::methods::measure,
                [buf(0, 64), 0, 0, 0, 0, 0],
            ),
            Attack::HandleWrapsAround => request(
                victim::ID,
                victim::methods::measure,
                [buf(0xFFFF_FFC0, 0x100), 0, 0, 0, 0, 0],
            ),
            Attack::BadBool => request(victim::ID, victim::methods::flag, [2, 0, 0, 0, 0, 0]),
            Attack::GarbageControlWord => {
                let mut w = request(victim::ID, v, [1, 2, 0, 0, 0, 0]);
                w[0] = control(0xDEAD, seq);
                w
            }
            Attack::ReservedBits => {
                let mut w = request(victim::ID, v, [1, 2, 0, 0, 0, 0]);
                w[1] |= 0xBAD << 40;
                w
            }
            Attack::WellFormed => request(victim::ID, v, [40, 2, 0, 0, 0, 0]),
            Attack::HandleOtherChannel => {
                let layout = gate::region().layout();
                let heap = layout.channel_heap(compartment_of(APP), compartment_of(VICTIM));
                request(
                    victim::ID,
                    victim::methods::measure,
                    [buf(heap.offset(), 64), 0, 0, 0, 0, 0],
                )
            }
        }
    }
}

/// What came back in the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawReply {
    Ok(u64),
    Err(GateError),
    /// Control word and word 1 of anything else: a reply with the wrong seq, an
    /// unknown state, an error code no `GateError` has.
    Unexpected(u64, u64),
    /// Nothing within the deadline.
    NoReply,
}

impl RawReply {
    /// As one word for the gate back to the scenario (lossy for `Ok` values of 2^32
    /// and more, which no attack expects, and for `Unexpected`): `0 << 32 | value`,
    /// `1 << 32 | code` for an error reply, `2 << 32` unexpected, `3 << 32` no reply.
    pub fn to_word(self) -> u64 {
        match self {
            RawReply::Ok(v) => v & 0xFFFF_FFFF,
            RawReply::Err(e) => 1 << 32 | e.code(),
            RawReply::Unexpected(..) => 2 << 32,
            RawReply::NoReply => 3 << 32,
        }
    }

    /// Inverse of [`RawReply::to_word`].
    pub fn from_word(w: u64) -> RawReply {
        match w >> 32 {
            0 => RawReply::Ok(w),
            1 => GateError::from_code(w & 0xFFFF_FFFF)
                .map_or(RawReply::Unexpected(0, w), RawReply::Err),
            2 => RawReply::Unexpected(0, 0),
            _ => RawReply::NoReply,
        }
    }
}

impl core::fmt::Display for RawReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RawReply::Ok(v) => write!(f, "reply ok {v}"),
            RawReply::Err(e) => write!(f, "error reply '{e}' (code {})", e.code()),
            RawReply::Unexpected(c, v) => write!(f, "unexpected slot words {c:#x} {v:#x}"),
            RawReply::NoReply => f.write_str("no reply"),
        }
    }
}

rpc::interface! {
    /// What the scenario asks of evil.
    pub mod evil (id = 2) {
        /// Posts one hand-made request to victim; returns the reply as `RawReply::to_word`.
        fn attack(which: Attack) -> u64 = 0;
        /// Reaches for shared memory that is not evil's (`buf`: a handle app leaked as
        /// an integer); returns what it read, or 0 after a write, if the monitor let it.
        fn intrude(which: Intrusion, buf: u64) -> u64 = 1;
    }
}

/// Next sequence number on the ring evil -> victim.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// How long to wait for a reply (the victim may be asleep: it gets a doorbell, but a
/// missing reply must end the scenario, not hang it).
const DEADLINE_NS: u64 = 2_000_000_000;

pub struct Evil;

impl evil::Api for Evil {
    fn attack(&self, which: Attack) -> u64 {
        let reply = raw_call(|seq| which.slot(seq));
        println!("evil: {}: got {reply}", which.describe());
        reply.to_word()
    }

    fn intrude(&self, which: Intrusion, buf: u64) -> u64 {
        let region = gate::region();
        let layout = region.layout();
        let (app, victim) = (compartment_of(APP), compartment_of(VICTIM));
        let at = |offset: u64| region.base().wrapping_add(offset as usize);
        println!("evil: intruding: {which:?}");
        match which {
            Intrusion::ForgeReply => {
                // A reply to app's next call on its ring to victim, with our value.
                let slot = at(layout.slot_offset(app, victim, 0));
                let forged = control(REPLY_OK, 0);
                poke_u64(slot.wrapping_add(8), 1337);
                poke_u64(slot, forged);
                0
            }
            Intrusion::ReadBuffer => {
                // Rebuilt from the leaked integer, as an attacker holding it would.
                let buf = SharedBuf::from_parts(buf as u32, (buf >> 32) as u32);
                let mut secret = [0u8; 8];
                match gate::bytes(buf).and_then(|b| b.read(0, &mut secret)) {
                    Ok(()) => u64::from_le_bytes(secret),
                    Err(e) => {
                        println!("evil: bytes() refused the handle: {e}");
                        0
                    }
                }
            }
            Intrusion::SetDead => {
                poke_u32(at(layout.dead_flag_offset(victim)), 1);
                0
            }
            Intrusion::WriteHeader => {
                poke_u64(at(0), 0);
                0
            }
            Intrusion::WriteState => {
                poke_u32(at(layout.sleeping_flag_offset(victim)), 1);
                0
            }
            Intrusion::PrintChannel => {
                let slot = at(layout.slot_offset(app, victim, 0));
                hypercall::console_write_at(slot as u64, 64);
                0
            }
        }
    }
}

/// Stores `value` at `addr` with one `mov`, in `asm!` so it is exactly the instruction
/// the monitor reports (a Rust store through a forged pointer would be undefined
/// behaviour).
#[inline(never)]
fn poke_u64(addr: *mut u8, value: u64) {
    // SAFETY: deliberately writes shared memory this compartment may not write: the
    // monitor stops the compartment at this instruction (isolation violation). Were it
    // mapped writable, the store is to an 8-byte aligned word of the region, which
    // everyone accesses atomically only, so it could not break Rust's rules either.
    unsafe {
        asm!(
            "mov qword ptr [{addr}], {value}",
            addr = in(reg) black_box(addr),
            value = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}

/// As [`poke_u64`], for a 32-bit flag.
#[inline(never)]
fn poke_u32(addr: *mut u8, value: u32) {
    // SAFETY: as for poke_u64, on a 4-byte aligned flag.
    unsafe {
        asm!(
            "mov dword ptr [{addr}], {value:e}",
            addr = in(reg) black_box(addr),
            value = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}

/// Publishes `slot_words(seq)` in the next slot of the ring evil -> victim, rings the
/// victim's doorbell if it sleeps, and waits for the reply.
fn raw_call(slot_words: impl FnOnce(u32) -> [u64; SLOT_WORDS]) -> RawReply {
    let region = gate::region();
    let layout = region.layout();
    let me = gate::endpoint().me();
    let target = compartment_of(VICTIM);
    let seq = SEQ.load(Ordering::Relaxed);
    let words = slot_words(seq);
    let at = |offset: u64| region.base().wrapping_add(offset as usize);
    let slot_addr = at(layout.slot_offset(me, target, seq)).cast::<AtomicU64>();
    // SAFETY: the slot lies inside the mapped region (offset from the validated
    // layout), is 64-byte aligned (region base and slot size are), and the region is
    // only ever accessed through atomics, by us and by every peer.
    let slot: &[AtomicU64; SLOT_WORDS] = unsafe { &*slot_addr.cast() };
    for (w, v) in slot.iter().zip(words).skip(1) {
        w.store(v, Ordering::Relaxed);
    }
    slot[0].store(words[0], Ordering::Release);
    // The publisher's half of the sleep handshake, as the endpoint does it.
    fence(Ordering::SeqCst);
    // SAFETY: the flag is a u32 inside the region's state area (validated layout),
    // 4-byte aligned, accessed only atomically.
    let sleeping: &AtomicU32 =
        unsafe { &*at(layout.sleeping_flag_offset(target)).cast::<AtomicU32>() };
    if sleeping.load(Ordering::Relaxed) != 0 {
        hypercall::doorbell(target);
    }

    let deadline = time::now_ns() + DEADLINE_NS;
    let reply = loop {
        let c = slot[0].load(Ordering::Acquire);
        if c == words[0] {
            // Still our request: the victim has not answered yet.
            if time::now_ns() > deadline {
                return RawReply::NoReply;
            }
            core::hint::spin_loop();
            continue;
        }
        let v = slot[1].load(Ordering::Relaxed);
        break match state_of(c) {
            REPLY_OK if seq_of(c) == seq => RawReply::Ok(v),
            REPLY_ERR if seq_of(c) == seq => {
                GateError::from_code(v).map_or(RawReply::Unexpected(c, v), RawReply::Err)
            }
            _ => RawReply::Unexpected(c, v),
        };
    };
    slot[0].store(control(EMPTY, 0), Ordering::Relaxed);
    SEQ.store(seq.wrapping_add(1), Ordering::Relaxed);
    reply
}

pub static EVIL_SERVER: evil::Server<Evil> = evil::Server(Evil);
