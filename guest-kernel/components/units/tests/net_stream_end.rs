//! When net tells the app a connection's stream has ended.

use flexos_net::ring::{EOF, RESET};
use flexos_net::tcp_end::{TcpState::*, stream_end};

/// A connection accepted while its handshake completes must not look ended: it did
/// (1 connection in 4 got 0 bytes when the ACK of the handshake came a poll later).
#[test]
fn handshake_is_not_the_end() {
    for s in [
        Listen,
        SynSent,
        SynReceived,
        Established,
        FinWait1,
        FinWait2,
    ] {
        assert_eq!(stream_end(s, 0), None, "{s:?}");
    }
}

#[test]
fn fin_after_all_bytes_is_eof_and_reset_is_reset() {
    for s in [CloseWait, LastAck, Closing, TimeWait] {
        assert_eq!(stream_end(s, 0), Some(EOF), "{s:?}");
        assert_eq!(stream_end(s, 1), None, "{s:?} with bytes still queued");
    }
    assert_eq!(stream_end(Closed, 0), Some(RESET));
    assert_eq!(stream_end(Closed, 5), None);
}
