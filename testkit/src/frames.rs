//! Ethernet frames for the network tests, from the device unit tests, the net
//! component's host tests and the end-to-end tests alike:
//!
//! - [`udp_frame`]: a UDP/IPv4 datagram the host's stack accepts (a correct IPv4 header
//!   checksum, no UDP checksum);
//! - [`tcp_syn`]: a TCP SYN (IPv4 and TCP checksums correct, so a driver that checks
//!   them passes it), from any source address: spoofed SYNs for the SYN-flood tests.

/// The Internet checksum (RFC 1071) of `data`: what goes into a checksum field that
/// was zero while summing.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 header checksum of `header` (its checksum field zero).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    internet_checksum(header)
}

/// Ethernet header (IPv4) and a 20-byte IPv4 header with its checksum, for a
/// `payload_len`-byte payload of `protocol`.
fn ipv4_frame_start(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    protocol: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(src_mac);
    f.extend([0x08, 0x00]);
    let total = (20 + payload_len) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(src_ip);
    ip.extend(dst_ip);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f
}

/// An Ethernet frame from `src_mac` to `dst_mac` carrying a UDP/IPv4 datagram from
/// 10.77.0.2:4000 to 10.77.0.1:`port`, with no UDP checksum.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = ipv4_frame_start(
        dst_mac,
        src_mac,
        [10, 77, 0, 2],
        [10, 77, 0, 1],
        17,
        8 + payload.len(),
    );
    f.extend(4000u16.to_be_bytes());
    f.extend(port.to_be_bytes());
    f.extend((8 + payload.len() as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

/// Where a TCP segment goes: addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEnds {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
}

/// TCP header flags.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The TCP checksum of `segment` (header with a zero checksum field, and payload)
/// from `src` to `dst`: the pseudo-header is summed in.
pub fn tcp_checksum(src: [u8; 4], dst: [u8; 4], segment: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(12 + segment.len());
    data.extend(src);
    data.extend(dst);
    data.extend([0, 6]);
    data.extend((segment.len() as u16).to_be_bytes());
    data.extend(segment);
    internet_checksum(&data)
}

/// A TCP/IPv4 segment with `flags`, sequence number `seq` (acknowledging `ack` when
/// `flags` has [`TCP_ACK`]), a 64 KiB window and an MSS option of 1460, checksums
/// correct.
pub fn tcp_frame(ends: &TcpEnds, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    // 20-byte header plus the MSS option (kind 2, length 4).
    let mut tcp = Vec::with_capacity(24);
    tcp.extend(ends.src_port.to_be_bytes());
    tcp.extend(ends.dst_port.to_be_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(if flags & TCP_ACK != 0 { ack } else { 0 }.to_be_bytes());
    tcp.extend([6 << 4, flags]);
    tcp.extend(0xffffu16.to_be_bytes());
    tcp.extend([0, 0, 0, 0]);
    tcp.extend([2, 4]);
    tcp.extend(1460u16.to_be_bytes());
    let sum = tcp_checksum(ends.src_ip, ends.dst_ip, &tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut f = ipv4_frame_start(
        ends.dst_mac,
        ends.src_mac,
        ends.src_ip,
        ends.dst_ip,
        6,
        tcp.len(),
    );
    f.extend(tcp);
    f
}

/// A connection request (SYN) with initial sequence number `seq`.
pub fn tcp_syn(ends: &TcpEnds, seq: u32) -> Vec<u8> {
    tcp_frame(ends, TCP_SYN, seq, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_its_checksum_sums_to_zero() {
        let f = udp_frame([1; 6], [2; 6], 5000, b"hi");
        assert_eq!(f.len(), 14 + 20 + 8 + 2);
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
        assert_eq!(&f[34..38], &[0x0f, 0xa0, 0x13, 0x88]);
        assert_eq!(&f[42..], b"hi");
    }

    #[test]
    fn a_syn_carries_its_fields_and_both_checksums_verify() {
        let ends = TcpEnds {
            src_mac: [2; 6],
            dst_mac: [1; 6],
            src_ip: [198, 18, 0, 7],
            dst_ip: [10, 0, 0, 2],
            src_port: 40000,
            dst_port: 5201,
        };
        let f = tcp_syn(&ends, 0x0102_0304);
        assert_eq!(f.len(), 14 + 20 + 24);
        assert_eq!(&f[..12], &[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        assert_eq!(f[14 + 9], 6, "protocol TCP");
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 44, "total length");
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
        let tcp = &f[34..];
        assert_eq!(tcp_checksum([198, 18, 0, 7], [10, 0, 0, 2], tcp), 0);
        assert_eq!(&tcp[..8], &[0x9c, 0x40, 0x14, 0x51, 1, 2, 3, 4]);
        assert_eq!(tcp[13], TCP_SYN);
        assert_eq!(tcp[12] >> 4, 6, "data offset: 24 bytes");
        // An odd-length segment still sums to zero with its checksum in place.
        let odd = [
            0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 0, 0, 0, 9,
        ];
        let sum = tcp_checksum([1, 2, 3, 4], [5, 6, 7, 8], &odd);
        let mut with = odd;
        with[16..18].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(tcp_checksum([1, 2, 3, 4], [5, 6, 7, 8], &with), 0);
    }
}
