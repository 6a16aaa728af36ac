//! virtio-blk requests: parsing a descriptor chain into a checked [`Request`], and
//! carrying it out against a [`Disk`].
//!
//! Layout (virtio 1.2, 5.2.6, any descriptor layout): a device-readable part holding
//! the 16-byte header (type, reserved, sector) and, for OUT, the data; then a
//! device-writable part holding, for IN and GET_ID, the data and, always, the status
//! byte as its very last byte. Everything the guest wrote is untrusted: directions,
//! lengths and the sector range are checked, every segment must lie in guest memory
//! before any byte moves, and arithmetic is checked.

use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use super::disk::{Disk, SECTOR_SIZE};
use crate::virtio::queue::Unanswerable;
use crate::virtio::{GuestMemory, StopFlag};

/// Length of the request header (`struct virtio_blk_outhdr`).
pub const HEADER_LEN: u32 = 16;

/// What the guest asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Unsupported(u32),
}

impl From<u32> for RequestType {
    fn from(t: u32) -> Self {
        match t {
            VIRTIO_BLK_T_IN => RequestType::In,
            VIRTIO_BLK_T_OUT => RequestType::Out,
            VIRTIO_BLK_T_FLUSH => RequestType::Flush,
            VIRTIO_BLK_T_GET_ID => RequestType::GetId,
            other => RequestType::Unsupported(other),
        }
    }
}

/// One contiguous piece of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A request whose every segment lies in guest memory with the right direction and
/// whose sector range lies in the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestType,
    pub sector: u64,
    /// The data: device-writable for IN and GET_ID, device-readable for OUT, empty
    /// otherwise.
    pub data: Vec<Segment>,
    /// Total length of `data`.
    pub data_len: u32,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// Why a request is refused with VIRTIO_BLK_S_IOERR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("a descriptor lies (partly) outside guest memory")]
    OutsideMemory,
    #[error("the header is shorter than 16 bytes")]
    ShortHeader,
    #[error("data has the wrong direction for the request type")]
    WrongDirection,
    #[error("data length is not a multiple of 512")]
    PartialSector,
    #[error("sector range lies beyond the end of the disk")]
    BeyondDisk,
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("host I/O error")]
    Io,
    /// Not a refusal: the device stopped mid-request (no status is written).
    #[error("the device stopped")]
    Stopped,
}

/// A chain that cannot become a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// There is a status byte to report the error in.
    #[error("{why}")]
    Rejected {
        status: GuestAddress,
        why: Rejection,
    },
    /// There is not: the chain is consumed with length 0 and the device needs a reset.
    #[error(transparent)]
    Unanswerable(#[from] Unanswerable),
}

/// Parses a chain against a disk of `disk_size` bytes.
pub fn parse(
    chain: DescriptorChain<&GuestMemory>,
    mem: &GuestMemory,
    disk_size: u64,
) -> Result<Request, ParseError> {
    // virtio-queue ends a chain early, without saying so, on a loop (more descriptors
    // than the queue has), a next index past the table, an unreadable descriptor or a
    // total over 4 GiB; a chain that ends on a descriptor with NEXT set was cut short.
    let descs: Vec<Descriptor> = chain.collect();
    let Some(last) = descs.last() else {
        return Err(Unanswerable("no readable descriptor").into());
    };
    if last.has_next() {
        return Err(Unanswerable("chain loops, leaves the table or exceeds 4 GiB").into());
    }
    let status = status_byte(last, mem).ok_or(Unanswerable(
        "last descriptor is not a writable status byte in memory",
    ))?;
    let reject = |why| ParseError::Rejected { status, why };

    let split = descs
        .iter()
        .position(|d| d.is_write_only())
        .unwrap_or(descs.len());
    let (readable, writable) = descs.split_at(split);
    if writable.iter().any(|d| !d.is_write_only()) {
        return Err(reject(Rejection::ReadableAfterWritable));
    }
    if descs
        .iter()
        .any(|d| !GuestMemoryBackend::check_range(mem, d.addr(), d.len() as usize))
    {
        return Err(reject(Rejection::OutsideMemory));
    }
    let readable: Vec<Segment> = readable.iter().map(segment).collect();
    let mut writable: Vec<Segment> = writable.iter().map(segment).collect();
    // The status byte is the last writable byte, not data.
    if let Some(s) = writable.last_mut() {
        s.len -= 1;
    }
    // Empty pieces (the status descriptor, once its byte is taken) carry nothing.
    let readable: Vec<Segment> = readable.into_iter().filter(|s| s.len > 0).collect();
    writable.retain(|s| s.len > 0);
    // Sums fit: the chain iterator stops before the total passes u32::MAX.
    let readable_len: u32 = readable.iter().map(|s| s.len).sum();
    let writable_len: u32 = writable.iter().map(|s| s.len).sum();

    let mut header = [0u8; HEADER_LEN as usize];
    if readable_len < HEADER_LEN {
        return Err(reject(Rejection::ShortHeader));
    }
    read_bytes(mem, &readable, &mut header).map_err(|_| reject(Rejection::OutsideMemory))?;
    let kind = RequestType::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    let sector = u64::from_le_bytes([
        header[8], header[9], header[10], header[11], header[12], header[13], header[14],
        header[15],
    ]);

    let (data, data_len) = match kind {
        RequestType::In | RequestType::GetId => {
            if readable_len != HEADER_LEN {
                return Err(reject(Rejection::WrongDirection));
            }
            (writable, writable_len)
        }
        RequestType::Out => {
            if writable_len != 0 {
                return Err(reject(Rejection::WrongDirection));
            }
            (skip(&readable, HEADER_LEN), readable_len - HEADER_LEN)
        }
        RequestType::Flush => {
            if readable_len != HEADER_LEN || writable_len != 0 {
                return Err(reject(Rejection::WrongDirection));
            }
            (Vec::new(), 0)
        }
        RequestType::Unsupported(_) => (Vec::new(), 0),
    };
    if matches!(kind, RequestType::In | RequestType::Out) {
        if u64::from(data_len) % SECTOR_SIZE != 0 {
            return Err(reject(Rejection::PartialSector));
        }
        let end = sector
            .checked_mul(SECTOR_SIZE)
            .and_then(|start| start.checked_add(u64::from(data_len)));
        if end.is_none_or(|end| end > disk_size) {
            return Err(reject(Rejection::BeyondDisk));
        }
    }
    Ok(Request {
        kind,
        sector,
        data,
        data_len,
        status,
    })
}

/// Most bytes moved between two checks of the stop flag. A request may move up to
/// 4 GiB (a chain of many descriptors over the same buffer); at the ~1-10 GB/s of a
/// file read or write here, a MiB takes well under a millisecond, so a stop or reset
/// takes effect within milliseconds whatever is queued.
pub const CHUNK: u32 = 1 << 20;

/// Carries out `req`; returns the status byte and the bytes written into the chain
/// (data plus status) for the used ring, or `None` when `stop` was set before it
/// finished (it then has no answer: the device is going away).
pub fn execute(
    req: &Request,
    disk: &Disk,
    mem: &GuestMemory,
    stop: &StopFlag,
) -> Option<(u8, u32)> {
    let result = match req.kind {
        RequestType::In => transfer(req, disk, mem, false, stop),
        RequestType::Out if disk.readonly() => Err(Rejection::ReadOnly),
        RequestType::Out => transfer(req, disk, mem, true, stop).map(|_| 0),
        // A read-only disk has nothing of ours to flush.
        RequestType::Flush if disk.readonly() => Ok(0),
        RequestType::Flush => disk.flush().map(|_| 0).map_err(|_| Rejection::Io),
        RequestType::GetId => write_bytes(mem, &req.data, disk.id()).map_err(|_| Rejection::Io),
        RequestType::Unsupported(_) => return Some((VIRTIO_BLK_S_UNSUPP as u8, 1)),
    };
    match result {
        Ok(written) => Some((VIRTIO_BLK_S_OK as u8, written + 1)),
        Err(Rejection::Stopped) => None,
        Err(_) => Some((VIRTIO_BLK_S_IOERR as u8, 1)),
    }
}

/// Moves the data of an IN (`to_disk` false) or OUT request; returns bytes written to
/// guest memory.
fn transfer(
    req: &Request,
    disk: &Disk,
    mem: &GuestMemory,
    to_disk: bool,
    stop: &StopFlag,
) -> Result<u32, Rejection> {
    // Cannot overflow: parse checked sector * 512 + data_len against the disk size,
    // and every segment against guest memory.
    let mut offset = req.sector * SECTOR_SIZE;
    for seg in &req.data {
        let mut at = 0;
        while at < seg.len {
            if stop.is_set() {
                return Err(Rejection::Stopped);
            }
            let len = (seg.len - at).min(CHUNK);
            let addr = GuestAddress(seg.addr.0 + u64::from(at));
            let done = if to_disk {
                disk.write_from_guest(mem, addr, len, offset)
            } else {
                disk.read_to_guest(mem, addr, len, offset)
            };
            done.map_err(|_| Rejection::Io)?;
            offset += u64::from(len);
            at += len;
        }
    }
    Ok(if to_disk { 0 } else { req.data_len })
}

/// Where the status byte of a chain ending in `last` goes, if it can be written.
fn status_byte(last: &Descriptor, mem: &GuestMemory) -> Option<GuestAddress> {
    if !last.is_write_only() || last.len() == 0 {
        return None;
    }
    let addr = last.addr().checked_add(u64::from(last.len()) - 1)?;
    GuestMemoryBackend::check_range(mem, addr, 1).then_some(addr)
}

fn segment(d: &Descriptor) -> Segment {
    Segment {
        addr: d.addr(),
        len: d.len(),
    }
}

/// The segments after the first `n` bytes.
fn skip(segments: &[Segment], mut n: u32) -> Vec<Segment> {
    let mut out = Vec::with_capacity(segments.len());
    for s in segments {
        if n >= s.len {
            n -= s.len;
            continue;
        }
        out.push(Segment {
            addr: GuestAddress(s.addr.0 + u64::from(n)),
            len: s.len - n,
        });
        n = 0;
    }
    out
}

/// Fills `buf` from the start of `segments` (which hold at least `buf.len()` bytes).
fn read_bytes(
    mem: &GuestMemory,
    segments: &[Segment],
    buf: &mut [u8],
) -> Result<(), vm_memory::GuestMemoryError> {
    let mut done = 0;
    for s in segments {
        if done == buf.len() {
            break;
        }
        let n = (s.len as usize).min(buf.len() - done);
        mem.read_slice(&mut buf[done..done + n], s.addr)?;
        done += n;
    }
    Ok(())
}

/// Writes as much of `bytes` as `segments` hold; returns the count.
fn write_bytes(
    mem: &GuestMemory,
    segments: &[Segment],
    bytes: &[u8],
) -> Result<u32, vm_memory::GuestMemoryError> {
    let mut done = 0;
    for s in segments {
        if done == bytes.len() {
            break;
        }
        let n = (s.len as usize).min(bytes.len() - done);
        mem.write_slice(&bytes[done..done + n], s.addr)?;
        done += n;
    }
    Ok(done as u32)
}
