//! Ethernet frames for the network tests: a UDP/IPv4 datagram the host's stack accepts
//! (a correct IPv4 header checksum, no UDP checksum), from the device unit tests and
//! the end-to-end tests alike.

/// The IPv4 header checksum of `header` (its checksum field zero).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame from `src_mac` to `dst_mac` carrying a UDP/IPv4 datagram from
/// 10.77.0.2:4000 to 10.77.0.1:`port`, with no UDP checksum.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(src_mac);
    f.extend([0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend([10, 77, 0, 2, 10, 77, 0, 1]);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(4000u16.to_be_bytes());
    f.extend(port.to_be_bytes());
    f.extend((8 + payload.len() as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
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
}
