//! How a UDP datagram crosses the byte ring of its endpoint (`sock::udp_ring`): an
//! 8-byte header, then the datagram's bytes, written with one publish so that a
//! reader that sees the header sees the bytes too.
//!
//! ```text
//!   0  len   u16, little-endian: the datagram's bytes after the header
//!   2  port  u16, little-endian: the sender's port
//!   4  addr  the sender's IPv4 address, in network order
//! ```

/// Bytes of the header.
pub const HEADER: usize = 8;

/// A datagram's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u16,
    pub port: u16,
    pub addr: [u8; 4],
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0..2].copy_from_slice(&self.len.to_le_bytes());
        h[2..4].copy_from_slice(&self.port.to_le_bytes());
        h[4..8].copy_from_slice(&self.addr);
        h
    }

    pub fn decode(h: &[u8; HEADER]) -> Header {
        Header {
            len: u16::from_le_bytes([h[0], h[1]]),
            port: u16::from_le_bytes([h[2], h[3]]),
            addr: [h[4], h[5], h[6], h[7]],
        }
    }
}

/// A peer as one number (the form of `sock::peer` and `sock::udp_send`).
pub fn endpoint(addr: [u8; 4], port: u16) -> i64 {
    (i64::from(u32::from_be_bytes(addr)) << 16) | i64::from(port)
}

/// The address and port of [`endpoint`]'s number; `None` if it is negative or too
/// large.
pub fn split(endpoint: i64) -> Option<([u8; 4], u16)> {
    if !(0..1 << 48).contains(&endpoint) {
        return None;
    }
    Some((((endpoint >> 16) as u32).to_be_bytes(), endpoint as u16))
}
