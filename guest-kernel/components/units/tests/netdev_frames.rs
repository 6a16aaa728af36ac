//! The virtio-net header and the checksum checks for frames the device does not vouch
//! for (netdev::frame).

use flexos_netdev::frame::{
    F_DATA_VALID, F_NEEDS_CSUM, GSO_TCPV4, HDR_LEN, Hdr, accept, checksum, checksums_ok,
    raise_syn_mss, tx_header,
};

/// An Ethernet + IPv4 + TCP frame with correct checksums and `payload`.
fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12] = 0x08;
    let total = 20 + 20 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = vec![
        0x13, 0x89, 0xc0, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    tcp.extend_from_slice(payload);
    let mut pseudo = vec![
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
        0,
        6,
        (tcp.len() >> 8) as u8,
        tcp.len() as u8,
    ];
    pseudo.extend_from_slice(&tcp);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

fn with_hdr(flags: u8, frame: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HDR_LEN];
    b[0] = flags;
    b.extend_from_slice(frame);
    b
}

#[test]
fn good_frames_pass_and_corrupted_ones_do_not() {
    let f = tcp_frame(b"hello, odd length");
    assert!(checksums_ok(&f));
    assert!(accept(&with_hdr(0, &f)));
    let mut bad_payload = f.clone();
    *bad_payload.last_mut().unwrap() ^= 0x40;
    assert!(!checksums_ok(&bad_payload));
    assert!(!accept(&with_hdr(0, &bad_payload)));
    let mut bad_ip = f.clone();
    bad_ip[14 + 8] = 1; // TTL changed, header checksum now wrong
    assert!(!checksums_ok(&bad_ip));
}

#[test]
fn frames_the_device_vouches_for_are_not_checked() {
    let mut partial = tcp_frame(&[0xAB; 3000]);
    let n = partial.len();
    partial[n - 1] ^= 1;
    assert!(accept(&with_hdr(F_NEEDS_CSUM, &partial)));
    assert!(accept(&with_hdr(F_DATA_VALID, &partial)));
    assert_eq!(
        Hdr::parse(&with_hdr(F_NEEDS_CSUM, &partial)).map(|h| h.checksum_vouched()),
        Some(true)
    );
}

#[test]
fn truncated_and_foreign_frames() {
    assert!(!accept(&[0u8; HDR_LEN - 1]), "no whole header");
    // ARP and garbage short frames are the stack's business.
    let mut arp = vec![0u8; 42];
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert!(checksums_ok(&arp));
    assert!(checksums_ok(&[1, 2, 3]));
    // An IPv4 header claiming more bytes than the frame has: left to the stack.
    let mut f = tcp_frame(b"x");
    f[14 + 2] = 0xff;
    let c = {
        f[14 + 10] = 0;
        f[14 + 11] = 0;
        checksum(&f[14..34])
    };
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert!(checksums_ok(&f));
}

/// What the host does with a NEEDS_CSUM frame: sums from csum_start to the end (the
/// partial sum in the field included) and stores the complement at csum_offset.
fn complete(frame: &mut [u8], hdr: &[u8; HDR_LEN]) {
    let start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
    let at = start + usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
    let mut sum: u64 = 0;
    for w in frame[start..].chunks(2) {
        sum += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[at..at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[test]
fn a_large_tcp_segment_goes_out_for_the_host_to_cut_and_sum() {
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let whole = tcp_frame(&payload);
    let mut f = whole.clone();
    let hdr = tx_header(&mut f, 1460);
    assert_eq!(hdr[0], F_NEEDS_CSUM);
    assert_eq!(hdr[1], GSO_TCPV4);
    // hdr_len (Ethernet + IP + TCP headers), gso_size, csum_start, csum_offset.
    assert_eq!(u16::from_le_bytes([hdr[2], hdr[3]]), 54);
    assert_eq!(u16::from_le_bytes([hdr[4], hdr[5]]), 1460);
    assert_eq!(u16::from_le_bytes([hdr[6], hdr[7]]), 34);
    assert_eq!(u16::from_le_bytes([hdr[8], hdr[9]]), 16);
    // Only the checksum field changed, and the host's completion gives the full sum.
    assert_eq!(f[..50], whole[..50]);
    assert_eq!(f[52..], whole[52..]);
    complete(&mut f, &hdr);
    assert_eq!(f, whole);
    assert!(checksums_ok(&f));
}

#[test]
fn a_small_tcp_segment_gets_checksum_offload_only() {
    let whole = tcp_frame(b"hello");
    let mut f = whole.clone();
    let hdr = tx_header(&mut f, 1460);
    assert_eq!((hdr[0], hdr[1]), (F_NEEDS_CSUM, 0));
    assert_eq!(hdr[2..6], [0, 0, 0, 0]);
    complete(&mut f, &hdr);
    assert_eq!(f, whole);
    // Exactly one MSS is one segment: no GSO either.
    let mut f = tcp_frame(&[0u8; 1460]);
    assert_eq!(tx_header(&mut f, 1460)[1], 0);
}

#[test]
fn frames_other_than_tcp_over_ipv4_carry_their_own_sums() {
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let before = arp.clone();
    assert_eq!(tx_header(&mut arp, 1460), [0; HDR_LEN]);
    assert_eq!(arp, before);
    let mut udp = tcp_frame(b"datagram");
    udp[14 + 9] = 17;
    let before = udp.clone();
    assert_eq!(tx_header(&mut udp, 1460), [0; HDR_LEN]);
    assert_eq!(udp, before);
    // Truncated or lying lengths: left alone.
    let mut short = tcp_frame(b"x")[..40].to_vec();
    assert_eq!(tx_header(&mut short, 1460), [0; HDR_LEN]);
}

/// A SYN from 10.0.0.1:5001 with TCP options `options` (a multiple of 4 bytes).
fn syn(options: &[u8]) -> Vec<u8> {
    let mut f = tcp_frame(options);
    f[14 + 20 + 12] = (((20 + options.len()) / 4) << 4) as u8;
    f[14 + 20 + 13] = 0x02;
    f
}

#[test]
fn a_syn_asks_the_stack_for_large_segments_and_the_peer_mss_is_kept() {
    let mut f = syn(&[2, 4, 0x05, 0xb4]);
    assert_eq!(
        raise_syn_mss(&mut f, 65495),
        Some(([10, 0, 0, 1], 5001, 1460))
    );
    assert_eq!(f[54..58], [2, 4, 0xff, 0xd7]);
    // After NOPs, in a SYN-ACK too; a larger MSS than ours is kept.
    let mut f = syn(&[1, 1, 2, 4, 0xff, 0xf0, 1, 0]);
    f[14 + 20 + 13] = 0x12;
    assert_eq!(
        raise_syn_mss(&mut f, 1000),
        Some(([10, 0, 0, 1], 5001, 0xfff0))
    );
    assert_eq!(f[56..60], [2, 4, 0xff, 0xf0]);
    // Not a SYN, a SYN with RST, no MSS option, an option running off the header.
    for (flags, options) in [
        (0x10, &[2u8, 4, 5, 0xb4][..]),
        (0x06, &[2, 4, 5, 0xb4]),
        (0x02, &[1, 1, 1, 0]),
        (0x02, &[3, 3, 7, 0]),
        (0x02, &[8, 10, 0, 0]),
    ] {
        let mut f = syn(options);
        f[14 + 20 + 13] = flags;
        let before = f.clone();
        assert_eq!(raise_syn_mss(&mut f, 65495), None, "{flags:x} {options:?}");
        assert_eq!(f, before);
    }
}
