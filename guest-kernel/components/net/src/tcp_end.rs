//! When a connection's byte stream has ended, from its TCP state: plain Rust (the
//! states mirror smoltcp's one to one), so the rule is tested on the host.

use crate::ring::{EOF, RESET};

/// The TCP states (RFC 793), as smoltcp names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

/// How the ring must be closed for a connection in `state` with `queued` received
/// bytes not yet moved into the ring: `Some(EOF)` once the peer's FIN came and every
/// byte before it is in the ring, `Some(RESET)` after a reset (the socket is closed
/// without a FIN), `None` while more may come. A connection still completing its
/// handshake has not ended, although it cannot receive yet either.
pub fn stream_end(state: TcpState, queued: usize) -> Option<u64> {
    if queued > 0 {
        return None;
    }
    match state {
        TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait => {
            Some(EOF)
        }
        TcpState::Closed => Some(RESET),
        TcpState::Listen
        | TcpState::SynSent
        | TcpState::SynReceived
        | TcpState::Established
        | TcpState::FinWait1
        | TcpState::FinWait2 => None,
    }
}
