//! The virtio-net header and the checksum checks for frames the device does not vouch
//! for (netdev::frame).

use flexos_netdev::frame::{
    F_DATA_VALID, F_NEEDS_CSUM, HDR_LEN, Hdr, accept, checksum, checksums_ok,
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
