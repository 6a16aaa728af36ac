//! What may cross a gate: [`GateSafe`] types, encoded as one u64 word each, and
//! [`SharedBuf`], the handle to bytes in the shared heap.

use crate::error::GateError;
use crate::layout::HeapBounds;

/// A type whose values can cross a gate as one u64 word.
///
/// # Safety
///
/// Implement this only for types that carry no pointer or reference into private
/// memory, so the word means the same thing in every compartment: integers, small
/// enums, handles into the shared region. `from_word` receives a word written by an
/// untrusted peer and must accept only valid encodings (return
/// [`GateError::BadArgument`] or [`GateError::BadHandle`] otherwise), never panic, and
/// be the inverse of `to_word` for every value. References, raw pointers, slices and
/// anything containing them must never implement it: that is what makes passing a
/// private pointer through an [`interface!`](crate::interface) a compile error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `GateSafe`, so it cannot cross a gate",
    label = "not gate-safe",
    note = "only integers, bool, (), enums made with `gate_enum!` and `SharedBuf` handles \
            cross a gate; put shared data in the shared heap and pass a `SharedBuf`"
)]
pub unsafe trait GateSafe: Copy {
    /// The value as a word.
    fn to_word(self) -> u64;
    /// Decodes and validates a word from a peer; `heap` bounds [`SharedBuf`] handles.
    fn from_word(word: u64, heap: &HeapBounds) -> Result<Self, GateError>;
}

macro_rules! gate_safe_unsigned {
    ($($t:ty),*) => {$(
        // SAFETY: an integer holds no pointer; from_word rejects words that do not
        // fit and never panics.
        unsafe impl GateSafe for $t {
            #[inline(always)]
            fn to_word(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_word(word: u64, _heap: &HeapBounds) -> Result<Self, GateError> {
                <$t>::try_from(word).map_err(|_| GateError::BadArgument)
            }
        }
    )*};
}

macro_rules! gate_safe_signed {
    ($($t:ty),*) => {$(
        // SAFETY: an integer holds no pointer; the word is the sign-extended value,
        // from_word rejects words that do not fit and never panics.
        unsafe impl GateSafe for $t {
            #[inline(always)]
            fn to_word(self) -> u64 {
                self as i64 as u64
            }
            #[inline(always)]
            fn from_word(word: u64, _heap: &HeapBounds) -> Result<Self, GateError> {
                <$t>::try_from(word as i64).map_err(|_| GateError::BadArgument)
            }
        }
    )*};
}

gate_safe_unsigned!(u8, u16, u32, u64, usize);
gate_safe_signed!(i8, i16, i32, i64, isize);

// SAFETY: a bool holds no pointer; only 0 and 1 are accepted.
unsafe impl GateSafe for bool {
    #[inline(always)]
    fn to_word(self) -> u64 {
        self as u64
    }
    #[inline(always)]
    fn from_word(word: u64, _heap: &HeapBounds) -> Result<Self, GateError> {
        match word {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(GateError::BadArgument),
        }
    }
}

// SAFETY: `()` holds nothing; only 0 is accepted.
unsafe impl GateSafe for () {
    #[inline(always)]
    fn to_word(self) -> u64 {
        0
    }
    #[inline(always)]
    fn from_word(word: u64, _heap: &HeapBounds) -> Result<Self, GateError> {
        if word == 0 {
            Ok(())
        } else {
            Err(GateError::BadArgument)
        }
    }
}

/// A handle to `len` bytes at `offset` (from the region base) in the shared heap.
///
/// A handle is just two numbers: it proves nothing by itself. A callee gets one only
/// through [`GateSafe::from_word`], which checks that it lies inside the heap of the
/// channel between caller and callee (a handle into any other channel is refused, so
/// a compartment cannot make a peer read data in flight between two others), and the
/// bytes are reached only through [`crate::Region::bytes`], which checks again. It
/// travels as `offset | len << 32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedBuf {
    offset: u32,
    len: u32,
}

impl SharedBuf {
    /// A handle from its parts, unchecked (checked when used).
    pub const fn from_parts(offset: u32, len: u32) -> SharedBuf {
        SharedBuf { offset, len }
    }

    /// Offset of the first byte from the region base.
    pub const fn offset(&self) -> u32 {
        self.offset
    }

    /// Length in bytes.
    pub const fn len(&self) -> u32 {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-buffer `at .. at + len`, if it lies inside this one.
    pub const fn slice(&self, at: u32, len: u32) -> Option<SharedBuf> {
        match at.checked_add(len) {
            Some(end) if end <= self.len => Some(SharedBuf {
                offset: self.offset + at,
                len,
            }),
            _ => None,
        }
    }

    /// Is the whole buffer inside the heap described by `heap`?
    pub const fn is_inside(&self, heap: &HeapBounds) -> bool {
        heap.contains(self.offset, self.len)
    }
}

// SAFETY: a SharedBuf is an offset and a length, not a pointer; it means the same
// bytes in every compartment because the region is mapped at the same address
// everywhere. from_word accepts only handles inside the heap.
unsafe impl GateSafe for SharedBuf {
    #[inline(always)]
    fn to_word(self) -> u64 {
        self.offset as u64 | (self.len as u64) << 32
    }
    #[inline(always)]
    fn from_word(word: u64, heap: &HeapBounds) -> Result<Self, GateError> {
        let buf = SharedBuf {
            offset: word as u32,
            len: (word >> 32) as u32,
        };
        if buf.is_inside(heap) {
            Ok(buf)
        } else {
            Err(GateError::BadHandle)
        }
    }
}

/// Declares a fieldless `#[repr(u8)]` enum with explicit discriminants and makes it
/// [`GateSafe`]: it crosses as its discriminant, and any other word is rejected with
/// [`GateError::BadArgument`]. The macro derives `Clone` and `Copy` itself; add other
/// derives as usual.
///
/// ```
/// rpc_shm::gate_enum! {
///     /// How to seek.
///     #[derive(Debug, PartialEq)]
///     pub enum Whence { Set = 0, Cur = 1, End = 2 }
/// }
/// use rpc_shm::{GateSafe, Layout};
/// let heap = Layout::new(1 << 20, 1).unwrap().channel_heap(0, 0);
/// assert_eq!(Whence::from_word(Whence::End.to_word(), &heap), Ok(Whence::End));
/// assert!(Whence::from_word(3, &heap).is_err());
/// ```
#[macro_export]
macro_rules! gate_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value ),+
        }

        // SAFETY: a fieldless #[repr(u8)] enum holds no pointer; from_word accepts
        // exactly the declared discriminants and never panics.
        unsafe impl $crate::GateSafe for $name {
            #[inline(always)]
            fn to_word(self) -> u64 {
                self as u8 as u64
            }
            #[inline(always)]
            fn from_word(
                word: u64,
                _heap: &$crate::HeapBounds,
            ) -> ::core::result::Result<Self, $crate::GateError> {
                $(
                    if word == $name::$variant as u8 as u64 {
                        return ::core::result::Result::Ok($name::$variant);
                    }
                )+
                ::core::result::Result::Err($crate::GateError::BadArgument)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    fn heap() -> HeapBounds {
        Layout::new(1 << 20, 2).unwrap().channel_heap(0, 1)
    }

    fn round_trip<T: GateSafe + PartialEq + core::fmt::Debug>(v: T) {
        assert_eq!(T::from_word(v.to_word(), &heap()), Ok(v));
    }

    #[test]
    fn integers() {
        round_trip(0u8);
        round_trip(u8::MAX);
        round_trip(u16::MAX);
        round_trip(u32::MAX);
        round_trip(u64::MAX);
        round_trip(usize::MAX);
        for v in [i64::MIN, -1, 0, 1, i64::MAX] {
            round_trip(v);
        }
        round_trip(i8::MIN);
        round_trip(i16::MIN);
        round_trip(i32::MIN);
        round_trip(isize::MIN);
        round_trip(true);
        round_trip(false);
        round_trip(());
        let h = heap();
        assert_eq!(u8::from_word(256, &h), Err(GateError::BadArgument));
        assert_eq!(u32::from_word(1 << 32, &h), Err(GateError::BadArgument));
        assert_eq!(i8::from_word(128, &h), Err(GateError::BadArgument));
        assert_eq!(
            i8::from_word(-129i64 as u64, &h),
            Err(GateError::BadArgument)
        );
        assert_eq!(
            i32::from_word(u32::MAX as u64, &h),
            Err(GateError::BadArgument)
        );
        assert_eq!(bool::from_word(2, &h), Err(GateError::BadArgument));
        assert_eq!(<()>::from_word(1, &h), Err(GateError::BadArgument));
    }

    #[test]
    fn shared_buf_bounds() {
        let h = heap();
        let ok = SharedBuf::from_parts(h.offset(), h.size());
        round_trip(ok);
        round_trip(SharedBuf::from_parts(h.offset() + h.size(), 0));
        for bad in [
            SharedBuf::from_parts(0, 1),
            SharedBuf::from_parts(h.offset() - 1, 1),
            SharedBuf::from_parts(h.offset(), h.size() + 1),
            SharedBuf::from_parts(u32::MAX, u32::MAX),
            SharedBuf::from_parts(h.offset() + h.size(), 1),
        ] {
            assert_eq!(
                SharedBuf::from_word(bad.to_word(), &h),
                Err(GateError::BadHandle)
            );
        }
        assert_eq!(
            ok.slice(1, 2),
            Some(SharedBuf::from_parts(h.offset() + 1, 2))
        );
        assert_eq!(ok.slice(h.size(), 1), None);
        assert_eq!(ok.slice(u32::MAX, 2), None);
    }

    crate::gate_enum! {
        #[derive(Debug, PartialEq)]
        enum Colour { Red = 1, Green = 2, Blue = 7 }
    }

    #[test]
    fn enums() {
        round_trip(Colour::Red);
        round_trip(Colour::Green);
        round_trip(Colour::Blue);
        for w in [0, 3, 6, 8, 257, u64::MAX] {
            assert_eq!(Colour::from_word(w, &heap()), Err(GateError::BadArgument));
        }
    }
}
