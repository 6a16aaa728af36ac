//! The iperf app's arguments and iperf3 control-protocol parsing.

use iperf::{
    Amount, COOKIE_LEN, Config, Dual, Params, StreamResult, UdpCount, cookie_prefix_ok,
    dual_request, milli_gbps, results_json, stream_id, test_json, udp_connect_reply,
};

#[test]
fn arguments() {
    let c = Config::parse([]).unwrap();
    assert_eq!(
        (c.port, c.port3, c.recv, c.count, c.idle),
        (5001, 5201, 128 * 1024, 0, 10)
    );
    assert_eq!(Config::parse(["idle=1"]).unwrap().idle, 1);
    assert_eq!(
        Config::parse(["idle=0"]).unwrap_err(),
        "iperf: idle=0: want seconds, at least 1"
    );
    assert_eq!(
        Config::parse(["idle=-1"]).unwrap_err(),
        "iperf: bad idle=-1: want a number"
    );
    let c = Config::parse([
        "recv=16",
        "port=6000",
        "port3=6001",
        "count=3",
        "ip=10.0.0.9/24",
    ])
    .unwrap();
    assert_eq!((c.port, c.port3, c.recv, c.count), (6000, 6001, 16, 3));
    // The stack's own settings pass through.
    let c = Config::parse([
        "net.spin=100",
        "net.waitspin=5",
        "net.rxbufs=32",
        "net.idle=3",
        "net.synq=4",
    ])
    .unwrap();
    assert_eq!(c.recv, 128 * 1024);
    assert_eq!(
        Config::parse(["recv=0"]).unwrap_err(),
        "iperf: recv=0 must be 1..=4194304"
    );
    assert_eq!(
        Config::parse(["recv=x"]).unwrap_err(),
        "iperf: bad recv=x: want a number"
    );
    assert_eq!(
        Config::parse(["port=5201"]).unwrap_err(),
        "iperf: ports must be non-zero and different (port=5201 port3=5201)"
    );
    assert_eq!(
        Config::parse(["verbose"]).unwrap_err(),
        "iperf: unknown argument 'verbose'"
    );
    assert_eq!(
        Config::parse(["speed=1"]).unwrap_err(),
        "iperf: unknown argument 'speed=1'"
    );
    assert_eq!(
        Config::parse(["port=70000"]).unwrap_err(),
        "iperf: bad port=70000: want a number"
    );
}

/// What iperf3 3.12 sends for `iperf3 -c 10.0.0.2 -t 3 -P 2 -J`.
const PARAMS: &str = r#"{"tcp":true,"omit":0,"time":3,"num":0,"blockcount":0,"parallel":2,"len":131072,"pacing_timer":1000,"client_version":"3.12"}"#;

#[test]
fn parameters() {
    assert_eq!(
        Params::parse(PARAMS),
        Some(Params {
            parallel: 2,
            reverse: false,
            bidir: false,
            udp: false,
            len: 131072,
            udp64: false,
        })
    );
    let one = r#"{"tcp":true,"omit":0,"time":10,"len":131072,"client_version":"3.12"}"#;
    assert_eq!(Params::parse(one).map(|p| p.parallel), Some(1));
    let rev = r#"{"tcp":true,"reverse":true,"parallel":1}"#;
    assert_eq!(Params::parse(rev).map(|p| p.reverse), Some(true));
    let bidir = r#"{"tcp":true,"bidirectional":true,"parallel":2,"len":1000}"#;
    let p = Params::parse(bidir).unwrap();
    assert_eq!(
        (p.bidir, p.reverse, p.len, p.streams()),
        (true, false, 1000, 4)
    );
    // The client's sending streams come first: the server sends on the last two.
    assert_eq!(
        (0..4).map(|i| p.server_sends(i)).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    let rev = Params::parse(rev).unwrap();
    assert_eq!((rev.streams(), rev.server_sends(0)), (1, true));
    assert!(!Params::parse(one).unwrap().server_sends(0));
    // A write larger than iperf3 allows is refused.
    assert_eq!(Params::parse(r#"{"len":1048577}"#), None);
    assert_eq!(
        Params::parse(r#"{"len":1048576}"#).map(|p| p.len),
        Some(1 << 20)
    );
    let udp = r#"{"udp":true,"parallel":1}"#;
    assert_eq!(Params::parse(udp).map(|p| p.udp), Some(true));
    // Nested or quoted look-alikes do not count.
    let nested = r#"{"extra_data":"\"parallel\":9","x":{"parallel":7},"parallel":3}"#;
    assert_eq!(Params::parse(nested).map(|p| p.parallel), Some(3));
    assert_eq!(Params::parse("not json"), None);
    assert_eq!(Params::parse(r#"{"parallel":0}"#), None);
    assert_eq!(Params::parse(r#"{"parallel":1000}"#), None);
    assert_eq!(Params::parse(r#"{"parallel":"#), None);
    assert_eq!(
        Params::parse(r#"{"title":"unterminated}"#).map(|p| p.parallel),
        Some(1)
    );
}

#[test]
fn results() {
    assert_eq!((stream_id(0), stream_id(1), stream_id(2)), (1, 3, 4));
    let json = results_json(&[
        StreamResult {
            bytes: 1000,
            end_us: 3_000_500,
            ..StreamResult::default()
        },
        StreamResult {
            bytes: 7,
            end_us: 12,
            packets: 5,
            errors: 2,
            jitter_us: 1_500_250,
        },
    ]);
    assert_eq!(
        json,
        "{\"cpu_util_total\":0,\"cpu_util_user\":0,\"cpu_util_system\":0,\"sender_has_retransmits\":-1,\"streams\":[\
         {\"id\":1,\"bytes\":1000,\"retransmits\":-1,\"jitter\":0.000000,\"errors\":0,\"packets\":0,\"start_time\":0,\"end_time\":3.000500},\
         {\"id\":3,\"bytes\":7,\"retransmits\":-1,\"jitter\":1.500250,\"errors\":2,\"packets\":5,\"start_time\":0,\"end_time\":0.000012}]}"
    );
    assert_eq!(milli_gbps(1_250_000_000, 1_000_000_000), 10_000);
    assert_eq!(milli_gbps(5, 0), 0);
    assert_eq!(
        test_json("iperf2", 5001, 2, 16, 2_500_000_000, 2_000_000_000, 2),
        "{\"bench\":\"iperf\",\"proto\":\"iperf2\",\"port\":5001,\"streams\":2,\"recv\":16,\
         \"bytes\":2500000000,\"seconds\":2.000,\"gbps\":10.000,\"compartments\":2}"
    );
}

/// What iperf3 3.12's `make_cookie` makes: 36 characters of its base-32 alphabet and
/// a NUL.
const COOKIE: &[u8; COOKIE_LEN] = b"qzmfx3m6sd2q5dvm7m7n4xjnyoguch6ww4ah\0";

#[test]
fn cookies_are_recognised_as_they_arrive() {
    for n in 0..=COOKIE_LEN {
        assert!(cookie_prefix_ok(&COOKIE[..n]), "the first {n} bytes");
    }
    // Anything else is refused from its first wrong byte.
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"A",
        b"abc1",
        b"abc8",
        b"\0",
        b"\xff\xfe",
    ] {
        assert!(!cookie_prefix_ok(bad), "{bad:?}");
    }
    let mut no_nul = *COOKIE;
    no_nul[COOKIE_LEN - 1] = b'a';
    assert!(!cookie_prefix_ok(&no_nul));
    let mut early_nul = *COOKIE;
    early_nul[10] = 0;
    assert!(!cookie_prefix_ok(&early_nul));
    // Longer than a cookie: not one.
    let mut longer = COOKIE.to_vec();
    longer.push(b'a');
    assert!(!cookie_prefix_ok(&longer));
}

/// A UDP datagram as iperf3 sends it: seconds, microseconds, a 32-bit sequence number.
fn udp(sec: u32, usec: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&sec.to_be_bytes());
    d.extend_from_slice(&usec.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.resize(len, 0);
    d
}

#[test]
fn udp_streams_count_losses_and_jitter_as_iperf3_does() {
    // The connect handshake, both generations, and anything else.
    assert_eq!(
        udp_connect_reply(&0x3637_3839u32.to_le_bytes()),
        Some(0x3938_3736u32.to_le_bytes())
    );
    assert_eq!(
        udp_connect_reply(&123_456_789u32.to_le_bytes()),
        Some(987_654_321u32.to_le_bytes())
    );
    assert_eq!(udp_connect_reply(b"9876x"), None);
    assert_eq!(udp_connect_reply(b"abcd"), None);
    let mut c = UdpCount::default();
    // Sent 1 ms apart, arriving with transit times 5, 5, 7 ms: the jitter grows.
    c.datagram(&udp(100, 0, 1, 1000), false, 5_000_000);
    c.datagram(&udp(100, 1000, 2, 1000), false, 6_000_000);
    assert_eq!((c.packets, c.lost, c.jitter_us()), (2, 0, 0));
    // 3 and 4 lost; 5 arrives 2 ms late.
    c.datagram(&udp(100, 4000, 5, 1000), false, 11_000_000);
    assert_eq!((c.packets, c.lost), (5, 2));
    assert_eq!(c.jitter_us(), 2000 / 16);
    // 3 after all: out of order, one loss taken back.
    c.datagram(&udp(100, 2000, 3, 1000), false, 11_000_000);
    assert_eq!(
        (c.packets, c.lost, c.out_of_order, c.bytes),
        (5, 1, 1, 4000)
    );
    // 64-bit counters; a datagram too short for its header only adds bytes.
    let mut c = UdpCount::default();
    let mut d = udp(1, 0, 0, 16);
    d[12..16].copy_from_slice(&7u32.to_be_bytes());
    c.datagram(&d, true, 0);
    c.datagram(&[1, 2, 3], true, 0);
    assert_eq!((c.packets, c.lost, c.bytes), (7, 6, 19));
}

#[test]
fn iperf2_dual_tests_are_read_from_the_clients_header() {
    let header =
        |words: [u32; 6]| -> Vec<u8> { words.iter().flat_map(|w| w.to_be_bytes()).collect() };
    // As iperf 2.1.8 sends them: -d -t 1, -r -n 1K, and a plain client.
    let d = header([0xc001_0079, 1, 5002, 0, 0, (-100i32) as u32]);
    assert_eq!(
        dual_request(&d),
        Some(Dual {
            port: 5002,
            now: true,
            amount: Amount::Millis(1000)
        })
    );
    let r = header([0xc001_0078, 1, 5001, 0, 0, 1024]);
    assert_eq!(
        dual_request(&r),
        Some(Dual {
            port: 5001,
            now: false,
            amount: Amount::Bytes(1024)
        })
    );
    assert_eq!(
        dual_request(&header([0x4001_0078, 1, 5001, 0, 0, 1024])),
        None
    );
    // Too short, or a port of 0: nothing.
    assert_eq!(dual_request(&d[..20]), None);
    assert_eq!(dual_request(&header([0x8000_0001, 1, 0, 0, 0, 1])), None);
    assert_eq!(
        dual_request(&header([0x8000_0001, 1, 70000, 0, 0, 1])),
        None
    );
}
