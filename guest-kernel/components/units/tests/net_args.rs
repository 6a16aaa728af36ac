//! The stack's `ip=` argument.

use flexos_net::args::{DEFAULT_IP, parse_cidr};

#[test]
fn addresses_parse() {
    assert_eq!(parse_cidr("10.0.0.2/24"), Some(([10, 0, 0, 2], 24)));
    assert_eq!(parse_cidr("192.168.7.9/16"), Some(([192, 168, 7, 9], 16)));
    assert_eq!(parse_cidr("10.1.2.3"), Some(([10, 1, 2, 3], 24)));
    assert_eq!(DEFAULT_IP, ([10, 0, 0, 2], 24));
}

#[test]
fn bad_addresses_are_refused() {
    for bad in [
        "",
        "10.0.0",
        "10.0.0.2.5",
        "10.0.0.256/24",
        "10.0.0.2/33",
        "10.0.0.2/0",
        "a.b.c.d",
        "10..0.2",
        "0.0.0.0/8",
        "10.0.0.2/",
        "+1.0.0.2",
        "1000.0.0.2",
    ] {
        assert_eq!(parse_cidr(bad), None, "{bad}");
    }
}
