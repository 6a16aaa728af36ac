//! Descriptor chains of the network queues, checked and turned into host iovecs, so a
//! frame moves between the backend and guest buffers in one `readv`/`writev` with no
//! copy in between.
//!
//! Everything in a chain is untrusted: the chain must end (no loop, no index past the
//! table, under 4 GiB: virtio-queue cuts such chains short, which shows as a last
//! descriptor with NEXT set), every descriptor must have the queue's direction
//! (device-writable on receive, device-readable on transmit) and lie wholly in the
//! device's memory, and the lengths must fit the queue's rules. Any of these failing
//! is a driver bug ([`ChainFault`]): the device consumes the chain with length 0 and
//! marks itself DEVICE_NEEDS_RESET.

use std::marker::PhantomData;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::VNET_HDR_LEN;
use crate::virtio::GuestMemory;

/// Most pieces one chain may have: IOV_MAX (1024) less the receive overflow buffer.
pub const MAX_SEGMENTS: usize = 1023;

/// A driver bug in one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("the chain loops, leaves the descriptor table or exceeds 4 GiB")]
    Broken,
    #[error("a receive chain holds a device-readable descriptor")]
    ReadableInReceive,
    #[error("a transmit chain holds a device-writable descriptor")]
    WritableInTransmit,
    #[error("descriptor {addr:#x}+{len} lies outside the device's memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("receive chain holds {got} bytes; it must hold {need} (header and largest frame)")]
    ReceiveTooSmall { got: u64, need: u32 },
    #[error("transmit chain of {got} bytes is shorter than the {VNET_HDR_LEN}-byte header")]
    TransmitTooShort { got: u64 },
    #[error("transmit chain of {got} bytes is longer than header and largest frame ({max})")]
    TransmitTooLong { got: u64, max: u32 },
    #[error("the chain has more than {MAX_SEGMENTS} pieces")]
    TooManyPieces,
}

/// The guest buffers of one chain as host iovecs, valid while the memory borrow `'m`
/// lasts (the device keeps its memory mapped for as long as it runs).
pub struct Buffers<'m> {
    iov: Vec<libc::iovec>,
    /// The same pieces as guest addresses, to patch the header in place.
    pieces: Vec<(GuestAddress, usize)>,
    len: u64,
    _mem: PhantomData<&'m GuestMemory>,
}

impl Buffers<'_> {
    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iovecs(&self) -> &[libc::iovec] {
        &self.iov
    }

    /// Writes `bytes` at byte `offset` of the chain (pieces in order).
    pub fn write_at(&self, mem: &GuestMemory, mut offset: usize, mut bytes: &[u8]) -> bool {
        for &(addr, len) in &self.pieces {
            if bytes.is_empty() {
                break;
            }
            if offset >= len {
                offset -= len;
                continue;
            }
            let n = (len - offset).min(bytes.len());
            let Some(at) = addr.0.checked_add(offset as u64) else {
                return false;
            };
            if mem.write_slice(&bytes[..n], GuestAddress(at)).is_err() {
                return false;
            }
            bytes = &bytes[n..];
            offset = 0;
        }
        bytes.is_empty()
    }
}

/// Which queue a chain came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// receiveq: device-writable, at least `need` bytes.
    Receive { need: u32 },
    /// transmitq: device-readable, header and at most `max` bytes in all.
    Transmit { max: u32 },
}

/// Checks `chain` for `dir` and maps it (see the module docs).
pub fn buffers<'m>(
    chain: DescriptorChain<&'m GuestMemory>,
    mem: &'m GuestMemory,
    dir: Direction,
) -> Result<Buffers<'m>, ChainFault> {
    let mut descs: Vec<Descriptor> = Vec::new();
    for d in chain {
        if descs.len() == MAX_SEGMENTS {
            return Err(ChainFault::TooManyPieces);
        }
        descs.push(d);
    }
    // An empty chain is a head whose descriptor could not be read: cut short too.
    let Some(last) = descs.last() else {
        return Err(ChainFault::Broken);
    };
    if last.has_next() {
        return Err(ChainFault::Broken);
    }
    let receive = matches!(dir, Direction::Receive { .. });
    if descs.iter().any(|d| d.is_write_only() != receive) {
        return Err(if receive {
            ChainFault::ReadableInReceive
        } else {
            ChainFault::WritableInTransmit
        });
    }
    let mut out = Buffers {
        iov: Vec::with_capacity(descs.len() + 1),
        pieces: Vec::with_capacity(descs.len()),
        len: 0,
        _mem: PhantomData,
    };
    for d in &descs {
        let outside = ChainFault::OutsideMemory {
            addr: d.addr().0,
            len: d.len(),
        };
        let len = d.len() as usize;
        if len == 0 {
            continue;
        }
        if !GuestMemoryBackend::check_range(mem, d.addr(), len) {
            return Err(outside);
        }
        // A piece may span two memory regions: one iovec per region.
        for slice in mem.get_slices(d.addr(), len) {
            let slice = slice.map_err(|_| outside)?;
            if out.iov.len() == MAX_SEGMENTS {
                return Err(ChainFault::TooManyPieces);
            }
            out.iov.push(libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: slice.len(),
            });
        }
        out.pieces.push((d.addr(), len));
        out.len += u64::from(d.len());
    }
    match dir {
        Direction::Receive { need } if out.len < u64::from(need) => {
            Err(ChainFault::ReceiveTooSmall { got: out.len, need })
        }
        Direction::Transmit { .. } if out.len < VNET_HDR_LEN as u64 => {
            Err(ChainFault::TransmitTooShort { got: out.len })
        }
        Direction::Transmit { max } if out.len > u64::from(max) => {
            Err(ChainFault::TransmitTooLong { got: out.len, max })
        }
        _ => Ok(out),
    }
}
