//! A real tap, inside a network namespace the test creates.

use super::*;
use flexos_testkit::in_private_netns;

fn ip(args: &str) {
    let out = std::process::Command::new("ip")
        .args(args.split(' '))
        .output()
        .expect("iproute2's `ip` (scripts/setup installs it)");
    assert!(out.status.success(), "ip {args}: {out:?}");
}

/// The tap's MAC address (SIOCGIFHWADDR on a socket of this namespace).
fn hw_addr(sock: i32, name: &str) -> [u8; 6] {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads and writes one ifreq, valid for the call.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFHWADDR, &mut req) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: SIOCGIFHWADDR filled in the hardware-address member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    std::array::from_fn(|i| data[i] as u8)
}

/// A UDP/IPv4 frame from the device's MAC, 10.77.0.2:4000, to 10.77.0.1:`port`.
fn udp_frame(dst_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    flexos_testkit::frames::udp_frame(dst_mac, DEFAULT_MAC, port, payload)
}

#[test]
fn a_real_tap_in_a_private_namespace_carries_frames_both_ways() {
    in_private_netns(|| {
        // Opening refuses what is not an existing, free tap.
        let missing = Tap::open("flxt0").unwrap_err();
        assert!(matches!(missing, TapError::Missing { .. }), "{missing}");
        assert!(matches!(Tap::open("lo"), Err(TapError::NotATap { .. })));
        ip("tuntap add dev flxt0 mode tap");
        ip("addr add 10.77.0.1/24 dev flxt0");
        ip("link set flxt0 up");
        let tap = Tap::open("flxt0").unwrap();
        let busy = Tap::open("flxt0").unwrap_err();
        assert!(matches!(busy, TapError::Busy { .. }), "{busy}");
        assert_eq!(
            busy.to_string(),
            "tap device flxt0 is busy (another process has it open)"
        );

        let mem = memory();
        let reports: Reports = Arc::default();
        let sink = reports.clone();
        let net = Net::new(tap, DEFAULT_MAC)
            .with_report(Arc::new(move |t: &str| sink.lock().unwrap().push(t.into())));
        let mut s = Setup {
            mem: mem.clone(),
            t: MmioTransport::new(net, mem.clone()).unwrap(),
            rx: Ring::new(MEM_START, 16),
            tx: Ring::new(MEM_START + 0x3000, 16),
            peer: SocketBackend::pair().unwrap().1,
            reports,
        };
        // TUNSETOFFLOAD(CSUM | TSO4) is accepted at DRIVER_OK.
        s.init(TSO);
        assert!(s.t.is_activated() && !s.needs_reset());

        // Receive: a datagram to 10.77.0.2 makes the host ask for its MAC; the ARP
        // request comes out of the tap into the guest's buffers (maybe after IPv6
        // chatter of a fresh link, which the test skips).
        // The thread is in the private namespace: the socket is too.
        let udp = std::net::UdpSocket::bind("10.77.0.1:5555").unwrap();
        assert_eq!(udp.send_to(b"x", "10.77.0.2:9").unwrap(), 1);
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut seen = 0u16;
        let arp = loop {
            s.rx.chain(&mem, &[(RX0, BIG, W)]);
            s.kick(RX_QUEUE);
            wait_used(&s.rx, &mem, seen + 1);
            let (_, len) = s.rx.used(&mem, seen);
            seen += 1;
            let got = s.bytes(RX0, len as usize);
            if got[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14] == [0x08, 0x06] {
                break got;
            }
            assert!(
                Instant::now() < give_up,
                "no ARP request came out of the tap"
            );
        };
        // num_buffers 1; a broadcast who-has 10.77.0.2 tell 10.77.0.1.
        assert_eq!(arp[10..12], [1, 0]);
        let eth = &arp[VNET_HDR_LEN..];
        assert_eq!(eth[..6], [0xff; 6]);
        assert_eq!(eth[14 + 6..14 + 8], [0, 1], "an ARP request");
        assert_eq!(eth[14 + 14..14 + 18], [10, 77, 0, 1]);
        assert_eq!(eth[14 + 24..14 + 28], [10, 77, 0, 2]);

        // Transmit: a UDP datagram to the host's socket, with a plain vnet header.
        let tap_mac = hw_addr(udp.as_raw_fd(), "flxt0");
        let payload = b"hello from the guest";
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend(udp_frame(tap_mac, 5555, payload));
        mem.write_slice(&f, GuestAddress(TXB)).unwrap();
        s.tx.chain(&mem, &[(TXB, 12, R), (TXB + 12, f.len() as u32 - 12, R)]);
        s.kick(TX_QUEUE);
        wait_used(&s.tx, &mem, 1);
        udp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(udp.recv(&mut buf).unwrap(), payload.len());
        assert_eq!(&buf[..payload.len()], payload);
        assert_eq!(s.stats().tx_errors.load(Ordering::Relaxed), 0);
        assert!(s.reports().is_empty(), "{:?}", s.reports());
    });
}
