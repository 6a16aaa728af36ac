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

/// `gso_type` of a TCP segment over IPv4 that the host cuts into `gso_size` pieces.
pub const GSO_TCPV4: u8 = 1;
/// Where a TCP header keeps its checksum.
const TCP_CSUM_AT: usize = 16;

/// The TCP header of an Ethernet `frame` (IPv4, not a fragment, lengths in range):
/// (IP header length, TCP header length, IP total length).
fn tcp_of(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let eth = frame.get(..ETH_LEN)?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let vihl = *ip.first()?;
    let ihl = usize::from(vihl & 0xf) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl + 20 || ip[9] != PROTO_TCP {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let thl = usize::from(ip[ihl + 12] >> 4) * 4;
    if thl < 20 || total < ihl + thl || total > ip.len() {
        return None;
    }
    Some((ihl, thl, total))
}

/// The virtio header for sending Ethernet `frame` with the device's transmit offloads
/// (CSUM, HOST_TSO4), preparing the frame for them. A TCP/IPv4 segment gets only the
/// pseudo-header sum in its checksum field and NEEDS_CSUM (the host completes the
/// sum, so the guest never reads the payload for it); one with more than `mss`
/// payload bytes is also marked TCPV4 with `gso_size` `mss`, for the host to cut into
/// segments. Any other frame gets an all-zero header and must carry its own
/// checksums.
pub fn tx_header(frame: &mut [u8], mss: u16) -> [u8; HDR_LEN] {
    let mut hdr = [0u8; HDR_LEN];
    let Some((ihl, thl, total)) = tcp_of(frame) else {
        return hdr;
    };
    let ip = ETH_LEN;
    let tcp = ip + ihl;
    let mut sum = add(0, &frame[ip + 12..ip + 20]);
    sum += u64::from(PROTO_TCP);
    sum += (total - ihl) as u64;
    frame[tcp + TCP_CSUM_AT..tcp + TCP_CSUM_AT + 2].copy_from_slice(&fold(sum).to_be_bytes());
    hdr[0] = F_NEEDS_CSUM;
    let payload = total - ihl - thl;
    if mss > 0 && payload > usize::from(mss) {
        hdr[1] = GSO_TCPV4;
        hdr[2..4].copy_from_slice(&((tcp + thl) as u16).to_le_bytes());
        hdr[4..6].copy_from_slice(&mss.to_le_bytes());
    }
    hdr[6..8].copy_from_slice(&(tcp as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&(TCP_CSUM_AT as u16).to_le_bytes());
    hdr
}

/// In a received TCP/IPv4 SYN (or SYN-ACK) Ethernet `frame`, raises the MSS option to
/// `mss`; returns the peer's address, its port and the MSS it asked for. The stack
/// then sends segments of up to `mss` bytes, which the device's TSO cuts to the
/// peer's MSS (kept by the caller, for [`tx_header`]). The TCP checksum is not
/// updated: call it only on frames already checked (or vouched for by the device),
/// for a stack that does not verify TCP checksums. `None` (frame unchanged) if it is
/// not such a SYN or has no MSS option.
pub fn raise_syn_mss(frame: &mut [u8], mss: u16) -> Option<([u8; 4], u16, u16)> {
    let (ihl, thl, _) = tcp_of(frame)?;
    let tcp = ETH_LEN + ihl;
    if frame[tcp + 13] & 0x06 != 0x02 {
        // Not a SYN, or a SYN with RST.
        return None;
    }
    let mut at = tcp + 20;
    let end = tcp + thl;
    while at < end {
        match frame[at] {
            0 => return None,
            1 => at += 1,
            kind => {
                let len = usize::from(*frame.get(at + 1)?);
                if len < 2 || at + len > end {
                    return None;
                }
                if kind == 2 && len == 4 {
                    let asked = u16::from_be_bytes([frame[at + 2], frame[at + 3]]);
                    frame[at + 2..at + 4].copy_from_slice(&mss.max(asked).to_be_bytes());
                    let ip = ETH_LEN;
                    let peer = [
                        frame[ip + 12],
                        frame[ip + 13],
                        frame[ip + 14],
                        frame[ip + 15],
                    ];
                    let port = u16::from_be_bytes([frame[tcp], frame[tcp + 1]]);
                    return Some((peer, port, asked));
                }
                at += len;
            }
        }
    }
    None
}
