//! The virtio-net header that precedes every frame, and the checksum checks the driver
//! does for frames whose header does not vouch for them: plain Rust, tested on the host.
//!
//! With GUEST_CSUM negotiated the device passes frames whose TCP/UDP checksum is only
//! partial (VIRTIO_NET_HDR_F_NEEDS_CSUM: locally generated, TSO super-frames) or was
//! already checked (F_DATA_VALID). The stack is told not to verify checksums at all,
//! so the driver verifies the frames that carry neither flag (anything else written
//! into the tap) and drops the bad ones.

/// Size of `virtio_net_hdr_v1` (VERSION_1: `num_buffers` is always present).
pub const HDR_LEN: usize = 12;
/// The checksum is partial: `csum_start`/`csum_offset` say where to finish it.
pub const F_NEEDS_CSUM: u8 = 1;
/// The device (host) already validated the checksum.
pub const F_DATA_VALID: u8 = 2;

/// The fields of a received header the driver looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hdr {
    pub flags: u8,
    pub gso_type: u8,
}

impl Hdr {
    /// Parses the first [`HDR_LEN`] bytes of a received buffer; `None` if shorter.
    pub fn parse(buf: &[u8]) -> Option<Hdr> {
        let b = buf.get(..HDR_LEN)?;
        Some(Hdr {
            flags: b[0],
            gso_type: b[1],
        })
    }

    /// Does the header vouch for the frame's checksums (partial or validated)?
    pub fn checksum_vouched(&self) -> bool {
        self.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0
    }
}

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Ones'-complement sum of `data` (big-endian 16-bit words, odd byte padded) added
/// to `sum`, not yet folded.
fn add(mut sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum to 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data` (what goes into a header whose checksum field is 0).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// Checks the IPv4 header checksum and the TCP/UDP checksum of an Ethernet `frame`
/// (without the virtio header). Frames that are not IPv4, or too malformed to find
/// the checksums in, pass: the stack parses them and drops what it cannot use.
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Some(eth) = frame.get(..ETH_LEN) else {
        return true;
    };
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV4 {
        return true;
    }
    let ip = &frame[ETH_LEN..];
    let Some(&vihl) = ip.first() else {
        return true;
    };
    let ihl = usize::from(vihl & 0xf) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return true;
    }
    if fold(add(0, &ip[..ihl])) != 0xffff {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if total < ihl || total > ip.len() || fragment {
        return true;
    }
    let proto = ip[9];
    let payload = &ip[ihl..total];
    match proto {
        PROTO_TCP if payload.len() >= 20 => {}
        // A zero UDP checksum means "none".
        PROTO_UDP if payload.len() >= 8 && payload[6..8] != [0, 0] => {}
        _ => return true,
    }
    let mut sum = add(0, &ip[12..20]);
    sum += u64::from(proto);
    sum += payload.len() as u64;
    fold(add(sum, payload)) == 0xffff
}

/// Should a received buffer (virtio header + frame) be handed to the stack? It must
/// hold a whole header and a frame whose checksums are vouched for or correct.
pub fn accept(buf: &[u8]) -> bool {
    match Hdr::parse(buf) {
        Some(hdr) => hdr.checksum_vouched() || checksums_ok(&buf[HDR_LEN..]),
        None => false,
    }
}
