//! The iperf3 server: one test at a time, a control connection and `-P` streams
//! (the protocol is in `iperf::msg`), the server receiving, sending (`-R`) or both
//! (`--bidir`).

use alloc::vec;
use alloc::vec::Vec;

use flexos_kernel::{println, time};
use flexos_net::codes::describe;
use flexos_net::{Conn, Recv, Sockets, Udp};
use iperf::{
    COOKIE_LEN, Config, MAX_JSON, Params, StreamResult, UdpCount, cookie_prefix_ok, msg,
    results_json, udp_connect_reply,
};

/// Bytes of each write when the client gives no `-l` (iperf3's TCP default).
const DEFAULT_LEN: usize = 128 << 10;
/// Room in a stream's send ring worth waking up for (the stack wakes a sleeping
/// sender when half the ring is free).
const SEND_WAKE: usize = 64 << 10;
/// Bytes one pass of the sender queues before the other streams and the control
/// connection get their turn.
const SEND_PASS: u64 = 4 << 20;

use crate::{Stream, report, report_test};

const NS_PER_S: u64 = 1_000_000_000;

/// A connection whose cookie is still arriving.
struct Pending {
    conn: Conn,
    cookie: Vec<u8>,
    /// When it was accepted (its cookie must come within `idle` seconds).
    since: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    ParamLen,
    Params(usize),
    Streams,
    Running,
    ResultsLen,
    Results(usize),
    Done,
}

struct Session {
    ctrl: Conn,
    cookie: Vec<u8>,
    state: State,
    inbox: Vec<u8>,
    /// The test's parameters, once they came.
    params: Option<Params>,
    /// What the server writes on its sending streams (the client does not look).
    block: Vec<u8>,
    /// The sending stream served first in the next batch (each takes its turn).
    send_turn: usize,
    /// The iperf3 port, where a UDP test's datagrams come.
    port: u16,
    /// A UDP test (`-u`): its endpoint on `port`, its streams (one per client port)
    /// and a buffer for a datagram.
    udp: Option<Udp>,
    udp_streams: Vec<UdpStream>,
    datagram: Vec<u8>,
    streams: Vec<Stream>,
    start_ns: u64,
    ctrl_ended: bool,
    /// When the control protocol last moved (a message, a stream): before the test
    /// runs, a session that stops moving for `idle` seconds is closed.
    progress_ns: u64,
}

/// A UDP stream of the test: the client's address and port, and its count.
struct UdpStream {
    addr: [u8; 4],
    port: u16,
    count: UdpCount,
    end_ns: Option<u64>,
}

pub struct Three {
    pending: Vec<Pending>,
    session: Option<Session>,
}

/// Reads from `conn` until `inbox` holds `need` bytes; `Ok(None)` at the end of the
/// stream, `Ok(Some(false))` if not yet.
fn fill(conn: &mut Conn, inbox: &mut Vec<u8>, need: usize) -> Result<Option<bool>, i64> {
    let mut chunk = [0u8; 512];
    while inbox.len() < need {
        let want = (need - inbox.len()).min(chunk.len());
        match conn.try_recv(&mut chunk[..want])? {
            Recv::Data(n) => inbox.extend_from_slice(&chunk[..n]),
            Recv::Empty => return Ok(Some(false)),
            Recv::End => return Ok(None),
        }
    }
    Ok(Some(true))
}

impl Three {
    pub fn new() -> Three {
        Three {
            pending: Vec::new(),
            session: None,
        }
    }

    pub fn arrived(&mut self, conn: Conn) {
        self.pending.push(Pending {
            conn,
            cookie: Vec::new(),
            since: time::now_ns(),
        });
    }

    /// The earliest time from which a connection is counted idle (a pending cookie,
    /// a session not yet running), if any: the server wakes `idle` seconds after it.
    pub fn idle_since(&self) -> Option<u64> {
        let pending = self.pending.iter().map(|p| p.since).min();
        let session = self
            .session
            .as_ref()
            .filter(|s| s.state != State::Running)
            .map(|s| s.progress_ns);
        pending.into_iter().chain(session).min()
    }

    /// Is any of our connections readable? (A wait condition.)
    pub fn readable(&self) -> bool {
        self.pending.iter().any(|p| p.conn.readable())
            || self.session.as_ref().is_some_and(|s| {
                (!s.ctrl_ended && s.ctrl.readable())
                    || s.streams
                        .iter()
                        .any(|st| st.end_ns.is_none() && st.conn.readable())
                    || s.udp.as_ref().is_some_and(Udp::readable)
                    || (s.state == State::Running
                        && s.streams.iter().any(|st| {
                            st.send && st.end_ns.is_none() && st.conn.send_space() >= SEND_WAKE
                        }))
            })
    }

    /// Moves every connection along; returns (progress, a test finished).
    pub fn pump(
        &mut self,
        net: &Sockets,
        buf: &mut [u8],
        config: &Config,
    ) -> Result<(bool, bool), i64> {
        let idle = u64::from(config.idle) * NS_PER_S;
        let mut progress = self.cookies(net, idle, config.port3)?;
        let Some(s) = self.session.as_mut() else {
            return Ok((progress, false));
        };
        for st in &mut s.streams {
            progress |= st.pump(buf)?;
        }
        if s.state == State::Running {
            progress |= push(net, &mut s.streams, &s.block, &mut s.send_turn)?;
        }
        if s.udp.is_some() {
            progress |= datagrams(s, net)?;
        }
        loop {
            let before = (s.state, s.streams.len());
            let now = time::now_ns();
            let step = match step(s, net)? {
                // The test slot is not held by a client that stopped talking.
                Step::Wait
                    if s.state != State::Running && now.saturating_sub(s.progress_ns) >= idle =>
                {
                    println!(
                        "iperf: iperf3 control connection closed: no progress for {} s (in {:?})",
                        config.idle, s.state
                    );
                    if s.state == State::Done {
                        // Results exchanged: only the client's last word is missing.
                        Step::Finished
                    } else {
                        let s = self.session.take().expect("session");
                        close_all(net, s);
                        return Ok((true, false));
                    }
                }
                other => other,
            };
            match step {
                Step::Continue => {}
                Step::Wait => break,
                Step::Aborted => {
                    println!("iperf: iperf3 client ended the test early");
                    let s = self.session.take().expect("session");
                    close_all(net, s);
                    return Ok((true, false));
                }
                Step::Finished => {
                    let s = self.session.take().expect("session");
                    for (i, st) in s.streams.iter().enumerate() {
                        report("iperf3", i, st);
                    }
                    if s.udp.is_some() {
                        report_udp(&s, config.port3);
                    } else {
                        report_test("iperf3", config.port3, &s.streams, config.recv);
                    }
                    close_all(net, s);
                    return Ok((true, true));
                }
            }
            if (s.state, s.streams.len()) != before {
                s.progress_ns = now;
                progress = true;
            }
        }
        Ok((progress, false))
    }

    /// Reads the cookies of new connections and files them; closes the ones that are
    /// not cookies, or have not come within `idle` ns.
    fn cookies(&mut self, net: &Sockets, idle: u64, port: u16) -> Result<bool, i64> {
        let mut progress = false;
        let mut i = 0;
        let now = time::now_ns();
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let filled = fill(&mut p.conn, &mut p.cookie, COOKIE_LEN)?;
            let problem = if !cookie_prefix_ok(&p.cookie) {
                Some("not an iperf3 cookie")
            } else if filled == Some(false) && now.saturating_sub(p.since) >= idle {
                Some("no cookie in time")
            } else {
                None
            };
            if let Some(problem) = problem {
                println!("iperf: iperf3 connection closed: {problem}");
                let p = self.pending.remove(i);
                net.close(p.conn)?;
                progress = true;
                continue;
            }
            match filled {
                Some(false) => {
                    i += 1;
                    continue;
                }
                None => {
                    let p = self.pending.remove(i);
                    net.close(p.conn)?;
                    progress = true;
                    continue;
                }
                Some(true) => {}
            }
            // In arrival order (not swap_remove): iperf3 numbers a test's streams in
            // the order it opened them, and matches the server's results to them so.
            let p = self.pending.remove(i);
            progress = true;
            match &mut self.session {
                None => {
                    net.send(&p.conn, &[msg::PARAM_EXCHANGE])?;
                    self.session = Some(Session {
                        ctrl: p.conn,
                        cookie: p.cookie,
                        state: State::ParamLen,
                        inbox: Vec::new(),
                        params: None,
                        block: Vec::new(),
                        send_turn: 0,
                        port,
                        udp: None,
                        udp_streams: Vec::new(),
                        datagram: Vec::new(),
                        streams: Vec::new(),
                        start_ns: 0,
                        ctrl_ended: false,
                        progress_ns: now,
                    });
                }
                Some(s) if s.state == State::Streams && s.cookie == p.cookie => {
                    // (The parameters came before State::Streams.)
                    let params = s.params;
                    let mut stream = Stream::new(p.conn);
                    stream.send = params.is_some_and(|p| p.server_sends(s.streams.len()));
                    s.streams.push(stream);
                    if Some(s.streams.len()) == params.map(|p| p.streams()) {
                        net.send(&s.ctrl, &[msg::TEST_START])?;
                        net.send(&s.ctrl, &[msg::TEST_RUNNING])?;
                        s.state = State::Running;
                        s.start_ns = time::now_ns();
                        for st in &mut s.streams {
                            st.start_ns = s.start_ns;
                        }
                    }
                }
                Some(_) => {
                    // Another test is running: iperf3 says "server busy" this way.
                    net.send(&p.conn, &[msg::ACCESS_DENIED])?;
                    net.close(p.conn)?;
                }
            }
        }
        Ok(progress)
    }
}

enum Step {
    Continue,
    Wait,
    Aborted,
    Finished,
}

/// Writes bytes into the sending streams' send rings (no gate call: the stack moves
/// them into the sockets between calls), until each ring is full or the stream had
/// its share of [`SEND_PASS`]. The first place goes round (`turn`), so parallel
/// streams send alike. A stream the stack refuses (reset, closed by the client) ends
/// there. Returns whether anything happened.
fn push(
    net: &Sockets,
    streams: &mut [Stream],
    block: &[u8],
    turn: &mut usize,
) -> Result<bool, i64> {
    let mut progress = false;
    let count = streams.len();
    let senders = streams.iter().filter(|st| st.send).count().max(1) as u64;
    for k in 0..count {
        let st = &mut streams[(*turn + k) % count];
        if !st.send || st.end_ns.is_some() {
            continue;
        }
        let mut budget = SEND_PASS / senders;
        loop {
            match net.stream(&mut st.conn, block) {
                Ok(0) => break,
                Ok(n) => {
                    st.bytes += n as u64;
                    progress = true;
                    budget = budget.saturating_sub(n as u64);
                    if budget == 0 {
                        break;
                    }
                }
                Err(code) => {
                    println!("iperf: iperf3 stream ended: {}", describe(code));
                    st.end_ns = Some(time::now_ns());
                    progress = true;
                    break;
                }
            }
        }
    }
    *turn = turn.wrapping_add(1);
    Ok(progress)
}

fn close_all(net: &Sockets, s: Session) {
    for st in s.streams {
        let _ = net.close(st.conn);
    }
    if let Some(udp) = s.udp {
        let _ = net.udp_close(udp);
    }
    let _ = net.close(s.ctrl);
}

/// Reads a UDP test's datagrams: before the test, each new client port's connect
/// message is answered and makes a stream (the test starts when all `-P` came);
/// while it runs, each stream's datagrams are counted. Others are ignored.
fn datagrams(s: &mut Session, net: &Sockets) -> Result<bool, i64> {
    let Some(udp) = s.udp.as_mut() else {
        return Ok(false);
    };
    let mut progress = false;
    let counters64 = s.params.is_some_and(|p| p.udp64);
    while let Some(d) = udp.try_recv(&mut s.datagram)? {
        progress = true;
        let data = &s.datagram[..d.len];
        let known = s
            .udp_streams
            .iter_mut()
            .find(|st| st.addr == d.addr && st.port == d.port);
        match (s.state, known) {
            (State::Running, Some(st)) => st.count.datagram(data, counters64, time::now_ns()),
            (State::Streams, None) => {
                let Some(reply) = udp_connect_reply(data) else {
                    continue;
                };
                net.udp_send(udp, d.addr, d.port, &reply)?;
                s.udp_streams.push(UdpStream {
                    addr: d.addr,
                    port: d.port,
                    count: UdpCount::default(),
                    end_ns: None,
                });
                if Some(s.udp_streams.len()) == s.params.map(|p| p.streams()) {
                    net.send(&s.ctrl, &[msg::TEST_START])?;
                    net.send(&s.ctrl, &[msg::TEST_RUNNING])?;
                    s.state = State::Running;
                    s.start_ns = time::now_ns();
                }
            }
            // A connect message sent again (its answer was lost): answer again.
            (State::Streams, Some(_)) => {
                if let Some(reply) = udp_connect_reply(data) {
                    net.udp_send(udp, d.addr, d.port, &reply)?;
                }
            }
            _ => {}
        }
    }
    Ok(progress)
}

/// A UDP test's lines: per stream, then the test's JSON.
fn report_udp(s: &Session, port: u16) {
    let end = s
        .udp_streams
        .iter()
        .filter_map(|st| st.end_ns)
        .max()
        .unwrap_or_else(time::now_ns);
    let ns = end.saturating_sub(s.start_ns);
    for (i, st) in s.udp_streams.iter().enumerate() {
        println!(
            "iperf: iperf3 UDP stream {i}: {} bytes, {} datagrams, {} lost, {} out of order, jitter {} us in {} s",
            st.count.bytes,
            st.count.packets,
            st.count.lost,
            st.count.out_of_order,
            st.count.jitter_us(),
            iperf::seconds(ns)
        );
    }
    let bytes = s.udp_streams.iter().map(|st| st.count.bytes).sum();
    println!(
        "{}",
        iperf::test_json(
            "iperf3-udp",
            port,
            s.udp_streams.len(),
            0,
            bytes,
            ns,
            flexos_kernel::boot_info().compartment_count
        )
    );
}

/// Advances the control protocol by at most one message.
fn step(s: &mut Session, net: &Sockets) -> Result<Step, i64> {
    let need = match s.state {
        State::ParamLen | State::ResultsLen => 4,
        State::Params(n) | State::Results(n) => n,
        State::Streams => return Ok(Step::Wait),
        State::Running | State::Done => 1,
    };
    let got = match fill(&mut s.ctrl, &mut s.inbox, need)? {
        Some(true) => true,
        Some(false) => false,
        None => {
            s.ctrl_ended = true;
            return Ok(if s.state == State::Done {
                Step::Finished
            } else {
                Step::Aborted
            });
        }
    };
    if !got {
        return Ok(Step::Wait);
    }
    let message: Vec<u8> = s.inbox.drain(..).collect();
    match s.state {
        State::ParamLen | State::ResultsLen => {
            let len = u32::from_be_bytes([message[0], message[1], message[2], message[3]]) as usize;
            if len == 0 || len > MAX_JSON {
                return Ok(Step::Aborted);
            }
            s.state = if s.state == State::ParamLen {
                State::Params(len)
            } else {
                State::Results(len)
            };
        }
        State::Params(_) => {
            let params = core::str::from_utf8(&message).ok().and_then(Params::parse);
            match params {
                Some(p) if p.udp && (p.reverse || p.bidir) => {
                    println!(
                        "iperf: iperf3 test refused: UDP with the server sending (-u -R, -u --bidir) is not served"
                    );
                    net.send(&s.ctrl, &[msg::SERVER_TERMINATE])?;
                    return Ok(Step::Aborted);
                }
                Some(p) if p.udp => match net.udp_open(s.port) {
                    Ok(udp) => {
                        s.params = Some(p);
                        s.udp = Some(udp);
                        s.datagram = vec![0; 65536];
                        net.send(&s.ctrl, &[msg::CREATE_STREAMS])?;
                        s.state = State::Streams;
                    }
                    Err(code) => {
                        println!("iperf: iperf3 UDP test refused: {}", describe(code));
                        net.send(&s.ctrl, &[msg::SERVER_TERMINATE])?;
                        return Ok(Step::Aborted);
                    }
                },
                Some(p) => {
                    s.params = Some(p);
                    if p.reverse || p.bidir {
                        let len = if p.len == 0 {
                            DEFAULT_LEN
                        } else {
                            p.len as usize
                        };
                        s.block = vec![0x5a; len];
                    }
                    net.send(&s.ctrl, &[msg::CREATE_STREAMS])?;
                    s.state = State::Streams;
                }
                None => {
                    println!("iperf: iperf3 test refused: bad parameters");
                    net.send(&s.ctrl, &[msg::SERVER_TERMINATE])?;
                    return Ok(Step::Aborted);
                }
            }
        }
        State::Running => match message[0] {
            msg::TEST_END => {
                let now = time::now_ns();
                for st in &mut s.udp_streams {
                    st.end_ns.get_or_insert(now);
                }
                for st in &mut s.streams {
                    if st.end_ns.is_none() {
                        st.end_ns = Some(now);
                    }
                    // Closed now, as iperf3's own server does: a client that received
                    // (-R, --bidir) reads its streams blocking after TEST_END, a whole
                    // block at a time, and only our FIN ends a read of the last,
                    // partial block; until then it would not hear EXCHANGE_RESULTS.
                    net.close_now(&mut st.conn)?;
                }
                net.send(&s.ctrl, &[msg::EXCHANGE_RESULTS])?;
                s.state = State::ResultsLen;
            }
            msg::CLIENT_TERMINATE => return Ok(Step::Aborted),
            _ => {}
        },
        State::Results(_) => {
            let mut results: Vec<StreamResult> = s
                .streams
                .iter()
                .map(|st| StreamResult {
                    bytes: st.bytes,
                    end_us: st.end_ns.unwrap_or(st.start_ns).saturating_sub(s.start_ns) / 1000,
                    ..StreamResult::default()
                })
                .collect();
            results.extend(s.udp_streams.iter().map(|st| StreamResult {
                bytes: st.count.bytes,
                end_us: st.end_ns.unwrap_or(s.start_ns).saturating_sub(s.start_ns) / 1000,
                packets: st.count.packets,
                errors: st.count.lost,
                jitter_us: st.count.jitter_us(),
            }));
            let json = results_json(&results);
            // One write, so one segment: an iperf3 client in -R or --bidir reads its
            // control connection without blocking, and a length that came without its
            // JSON ends its test ("unable to receive results").
            let mut reply = Vec::with_capacity(json.len() + 5);
            reply.extend_from_slice(&(json.len() as u32).to_be_bytes());
            reply.extend_from_slice(json.as_bytes());
            reply.push(msg::DISPLAY_RESULTS);
            net.send(&s.ctrl, &reply)?;
            s.state = State::Done;
        }
        State::Done => {
            if message[0] == msg::IPERF_DONE {
                return Ok(Step::Finished);
            }
        }
        State::Streams => {}
    }
    Ok(Step::Continue)
}
