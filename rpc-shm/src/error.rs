//! The two error types: [`GateError`] (a call failed; crosses the ring as a code) and
//! [`LayoutError`] (a region or layout is unusable).

use core::fmt;

/// Why a gate call failed. Travels in an error reply as [`GateError::code`].
///
/// The codes are part of the wire format: never renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GateError {
    /// The callee has no server registered for this interface id.
    UnknownInterface,
    /// The interface has no method with this id.
    UnknownMethod,
    /// An argument (or a returned value) is not a valid value of its type, e.g. `2` for a
    /// `bool`, `300` for a `u8`, an unknown enum discriminant.
    BadArgument,
    /// A [`crate::SharedBuf`] handle does not lie inside the shared heap (or a byte
    /// access is outside the buffer).
    BadHandle,
    /// The request slot is malformed: unknown state word, reserved bits set.
    BadSlot,
    /// The reply slot is malformed (a misbehaving callee).
    BadReply,
    /// The target compartment is marked dead by the monitor.
    PeerDead,
    /// All ring slots towards the target are taken by nested calls still in flight.
    TooDeep,
    /// The target compartment does not exist, or is the caller itself.
    NoSuchCompartment,
}

impl GateError {
    /// Every error, in code order (`ALL[i].code() == i + 1`).
    pub const ALL: [GateError; 9] = [
        GateError::UnknownInterface,
        GateError::UnknownMethod,
        GateError::BadArgument,
        GateError::BadHandle,
        GateError::BadSlot,
        GateError::BadReply,
        GateError::PeerDead,
        GateError::TooDeep,
        GateError::NoSuchCompartment,
    ];

    /// The wire code of this error (never 0).
    #[inline]
    pub const fn code(self) -> u64 {
        match self {
            GateError::UnknownInterface => 1,
            GateError::UnknownMethod => 2,
            GateError::BadArgument => 3,
            GateError::BadHandle => 4,
            GateError::BadSlot => 5,
            GateError::BadReply => 6,
            GateError::PeerDead => 7,
            GateError::TooDeep => 8,
            GateError::NoSuchCompartment => 9,
        }
    }

    /// The error with wire code `code`, if there is one.
    #[inline]
    pub const fn from_code(code: u64) -> Option<GateError> {
        if code == 0 || code > Self::ALL.len() as u64 {
            return None;
        }
        Some(Self::ALL[code as usize - 1])
    }

    /// A short description.
    #[inline]
    pub const fn as_str(self) -> &'static str {
        match self {
            GateError::UnknownInterface => "unknown interface",
            GateError::UnknownMethod => "unknown method",
            GateError::BadArgument => "invalid argument value",
            GateError::BadHandle => "shared buffer outside the shared heap",
            GateError::BadSlot => "malformed request slot",
            GateError::BadReply => "malformed reply",
            GateError::PeerDead => "peer compartment is dead",
            GateError::TooDeep => "too many nested calls on one ring",
            GateError::NoSuchCompartment => "no such compartment",
        }
    }
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for GateError {}

/// Why a shared region cannot be laid out or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Compartment count not in `1..=MAX_COMPARTMENTS`, or a compartment id out of range.
    BadCompartments(u32),
    /// The region is too small for the header, state lines, rings and one minimal arena
    /// per compartment.
    TooSmall { need: u64, have: u64 },
    /// The region is larger than a [`crate::SharedBuf`] offset (u32) can address.
    TooLarge(u64),
    /// The region size is not a multiple of 4 KiB, or its base not 64-byte aligned.
    Misaligned,
    /// The header does not start with [`crate::MAGIC`].
    BadMagic(u64),
    /// The header has another [`crate::VERSION`].
    BadVersion(u32),
    /// The header's fields differ from the layout this crate computes for the region's
    /// size and compartment count.
    Mismatch,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::BadCompartments(n) => write!(
                f,
                "compartment count or id {n} out of range (1..={})",
                crate::MAX_COMPARTMENTS
            ),
            LayoutError::TooSmall { need, have } => write!(
                f,
                "shared region of {have} bytes is too small, need at least {need}"
            ),
            LayoutError::TooLarge(size) => {
                write!(
                    f,
                    "shared region of {size} bytes is larger than 4 GiB - 4 KiB"
                )
            }
            LayoutError::Misaligned => f.write_str(
                "shared region size must be a multiple of 4 KiB and its base 64-byte aligned",
            ),
            LayoutError::BadMagic(m) => write!(f, "bad shared region magic {m:#018x}"),
            LayoutError::BadVersion(v) => write!(
                f,
                "shared region version {v}, this build speaks {}",
                crate::VERSION
            ),
            LayoutError::Mismatch => {
                f.write_str("shared region header disagrees with the computed layout")
            }
        }
    }
}

impl core::error::Error for LayoutError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (i, e) in GateError::ALL.iter().enumerate() {
            assert_eq!(e.code(), i as u64 + 1);
            assert_eq!(GateError::from_code(e.code()), Some(*e));
        }
        assert_eq!(GateError::from_code(0), None);
        assert_eq!(GateError::from_code(10), None);
        assert_eq!(GateError::from_code(u64::MAX), None);
    }
}
