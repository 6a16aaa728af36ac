//! The send batch: the bytes of many connections in one gate call (`sock::send_batch`).
//!
//! An app in another compartment than the stack pays a gate round trip per call, and a
//! server answers its clients one write each (Redis: one per client per event-loop
//! turn). The POSIX layer queues writes per socket and hands them over in one batch
//! before it waits; the stack takes what each socket's send buffer has room for and
//! writes back, per entry, how much it took.
//!
//! ```text
//! entry:   0  conn    the connection id (i64; -1 ends the batch early)
//!          8  len     bytes of data that follow the header
//!         16  result  written by the stack: bytes taken, or a negative code
//!         24  data    len bytes, then padding to 8
//! ```
//!
//! The stack reads the buffer while the app could change it: every entry is checked
//! against the buffer's length, and a garbled one ends the batch (the app only hurts
//! its own connections).

use rpc_shm::SharedBytes;

/// Bytes of an entry's header.
pub const HEADER: usize = 24;

/// Room an entry with `len` data bytes takes.
pub const fn entry_len(len: usize) -> usize {
    HEADER + len.next_multiple_of(8)
}

/// One entry as the stack reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub conn: i64,
    /// Where its data starts in the buffer, and how long it is.
    pub data: usize,
    pub len: usize,
    /// Where the next entry starts.
    pub next: usize,
}

/// Writes `items` (connection id, bytes) into `buf` from its start, as many as fit
/// (the last one maybe in part); returns how many bytes of each item went in (fewer
/// entries than items when the buffer is full). Ends the batch with a `-1` entry
/// when there is room for one.
pub fn encode(buf: &SharedBytes<'_>, items: &[(i64, &[u8])]) -> alloc::vec::Vec<usize> {
    let mut put = alloc::vec::Vec::new();
    let mut at = 0usize;
    for &(conn, data) in items {
        let room = buf.len().saturating_sub(at + HEADER) & !7;
        let n = data.len().min(room);
        if n == 0 && !data.is_empty() {
            break;
        }
        if !(buf.store_u64(at, conn as u64)
            && buf.store_u64(at + 8, n as u64)
            && buf.store_u64(at + 16, 0)
            && buf.copy_in(at + HEADER, &data[..n]).is_ok())
        {
            break;
        }
        put.push(n);
        at += entry_len(n);
    }
    if at + HEADER <= buf.len() {
        buf.store_u64(at, u64::MAX);
    }
    put
}

/// The entry at `at`, checked against the buffer; `None` at the end of the batch or
/// at a garbled entry.
pub fn entry(buf: &SharedBytes<'_>, at: usize) -> Option<Entry> {
    if at.checked_add(HEADER)? > buf.len() {
        return None;
    }
    let conn = buf.load_u64(at)? as i64;
    if conn < 0 {
        return None;
    }
    let len = usize::try_from(buf.load_u64(at + 8)?).ok()?;
    let next = at
        .checked_add(HEADER)?
        .checked_add(len.checked_next_multiple_of(8)?)?;
    if at + HEADER + len > buf.len() {
        return None;
    }
    Some(Entry {
        conn,
        data: at + HEADER,
        len,
        next: next.min(buf.len()),
    })
}

/// Stores the stack's answer for the entry at `at`.
pub fn set_result(buf: &SharedBytes<'_>, at: usize, result: i64) {
    buf.store_u64(at + 16, result as u64);
}

/// The answers for the first `count` entries, in order.
pub fn results(buf: &SharedBytes<'_>, count: usize) -> alloc::vec::Vec<i64> {
    let mut out = alloc::vec::Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let Some(e) = entry(buf, at) else { break };
        out.push(
            buf.load_u64(at + 16)
                .map_or(crate::codes::E_BAD_BUFFER, |r| r as i64),
        );
        at = e.next;
    }
    out
}
