//! The plain-Rust parts of the iperf servers, tested on the host (components/units):
//! the guest arguments, iperf3's control protocol (message codes, the parameter
//! JSON it sends, the results JSON the server answers with) and result formatting.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;

/// Default ports of the two servers.
pub const IPERF2_PORT: u16 = 5001;
pub const IPERF3_PORT: u16 = 5201;
/// Default size of each receive call.
pub const DEFAULT_RECV: usize = 128 * 1024;
/// Default seconds a connection may make no progress before the server closes it
/// (`idle=`): an iperf3 connection whose cookie has not come, a control connection
/// stalled before its test runs (it holds the one test slot: other clients are told
/// the server is busy), an iperf2 connection that sends nothing. Stock clients send
/// each of these within milliseconds; 10 s leaves a slow network ample margin and
/// keeps a stalled client from holding the test slot for long.
pub const DEFAULT_IDLE: u32 = 10;
/// Largest receive call.
pub const MAX_RECV: usize = 4 << 20;

/// What the guest arguments ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub port: u16,
    pub port3: u16,
    pub recv: usize,
    /// Exit 0 after this many tests (0: serve forever).
    pub count: u32,
    /// Seconds without progress before a connection is closed (see [`DEFAULT_IDLE`]).
    pub idle: u32,
}

/// The usage line printed with an argument error.
pub const USAGE: &str = "usage: iperf [port=5001] [port3=5201] [recv=BYTES] [count=N] [idle=SECS] \
     [ip=A.B.C.D/PREFIX] [net.*=...]";

fn number<T: core::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("iperf: bad {key}={value}: want a number"))
}

impl Config {
    /// Parses `key=value` arguments; `ip=` is the stack's and passes here.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, String> {
        let mut c = Config {
            port: IPERF2_PORT,
            port3: IPERF3_PORT,
            recv: DEFAULT_RECV,
            count: 0,
            idle: DEFAULT_IDLE,
        };
        for arg in args {
            let Some((key, value)) = arg.split_once('=') else {
                return Err(format!("iperf: unknown argument '{arg}'"));
            };
            match key {
                "port" => c.port = number(key, value)?,
                "port3" => c.port3 = number(key, value)?,
                "recv" => c.recv = number(key, value)?,
                "count" => c.count = number(key, value)?,
                "idle" => c.idle = number(key, value)?,
                // The stack's own settings.
                "ip" => {}
                k if k.starts_with("net.") => {}
                _ => return Err(format!("iperf: unknown argument '{arg}'")),
            }
        }
        if c.port == 0 || c.port3 == 0 || c.port == c.port3 {
            return Err(format!(
                "iperf: ports must be non-zero and different (port={} port3={})",
                c.port, c.port3
            ));
        }
        if c.recv == 0 || c.recv > MAX_RECV {
            return Err(format!("iperf: recv={} must be 1..={MAX_RECV}", c.recv));
        }
        if c.idle == 0 {
            return Err("iperf: idle=0: want seconds, at least 1".into());
        }
        Ok(c)
    }
}

/// iperf3 control messages (one signed byte each).
pub mod msg {
    pub const TEST_START: u8 = 1;
    pub const TEST_RUNNING: u8 = 2;
    pub const TEST_END: u8 = 4;
    pub const PARAM_EXCHANGE: u8 = 9;
    pub const CREATE_STREAMS: u8 = 10;
    pub const SERVER_TERMINATE: u8 = 11;
    pub const CLIENT_TERMINATE: u8 = 12;
    pub const EXCHANGE_RESULTS: u8 = 13;
    pub const DISPLAY_RESULTS: u8 = 14;
    pub const IPERF_DONE: u8 = 16;
    /// -1: the server is busy with another test.
    pub const ACCESS_DENIED: u8 = 0xff;
}

/// Length of the cookie that starts the control and every data connection.
pub const COOKIE_LEN: usize = 37;
/// The characters of a cookie (iperf3's `make_cookie`): 36 of them, then a NUL.
const COOKIE_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Could `bytes` be the start of an iperf3 cookie? (Checked as bytes arrive, so a
/// connection that starts with anything else is closed at once.)
pub fn cookie_prefix_ok(bytes: &[u8]) -> bool {
    bytes.len() <= COOKIE_LEN
        && bytes.iter().enumerate().all(|(i, b)| {
            if i == COOKIE_LEN - 1 {
                *b == 0
            } else {
                COOKIE_CHARS.contains(b)
            }
        })
}
/// Longest JSON document accepted from a client.
pub const MAX_JSON: usize = 64 * 1024;

/// The test parameters the server needs from the client's JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Number of data streams (`-P`) in each direction.
    pub parallel: u32,
    /// `-R`: the server sends.
    pub reverse: bool,
    /// `--bidir`: `parallel` streams each way; the client opens the ones it sends on
    /// first.
    pub bidir: bool,
    /// `-u`: UDP (not supported).
    pub udp: bool,
    /// `-l`: bytes of each write (the server's, when it sends); 0 if absent.
    pub len: u32,
    /// UDP sequence numbers are 64 bits (`--udp-counters-64bit`).
    pub udp64: bool,
}

/// Largest write a sending server makes (iperf3 caps `-l` for TCP at 1 MiB too).
pub const MAX_LEN: u32 = 1 << 20;

impl Params {
    /// Data connections the client opens.
    pub fn streams(&self) -> usize {
        self.parallel as usize * if self.bidir { 2 } else { 1 }
    }

    /// Does the server send on the `index`th data connection (in the order the client
    /// opened them)? With `--bidir` the client opens its sending ones first.
    pub fn server_sends(&self, index: usize) -> bool {
        if self.bidir {
            index >= self.parallel as usize
        } else {
            self.reverse
        }
    }
}

/// The index of the quote that closes the string starting after `open`.
fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The value text after `"key":` at the top level of the object `json`, if present.
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let bytes = json.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let end = string_end(bytes, i)?;
                if depth == 1 && &json[i + 1..end] == key {
                    let rest = json[end + 1..].trim_start();
                    if let Some(value) = rest.strip_prefix(':') {
                        return Some(value.trim_start());
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// An unsigned integer field.
fn uint(json: &str, key: &str) -> Option<u64> {
    let v = field(json, key)?;
    let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    v[..end].parse().ok()
}

/// A `true`/`false` field (or 1/0); absent is false.
fn flag(json: &str, key: &str) -> bool {
    match field(json, key) {
        Some(v) => v.starts_with("true") || v.starts_with('1'),
        None => false,
    }
}

impl Params {
    /// Reads the parameters iperf3 sends after PARAM_EXCHANGE. `None` if the text is
    /// not a JSON object, asks for more than 128 streams or writes over [`MAX_LEN`].
    pub fn parse(json: &str) -> Option<Params> {
        let t = json.trim();
        if !t.starts_with('{') || !t.ends_with('}') {
            return None;
        }
        let parallel = uint(t, "parallel").unwrap_or(1);
        if parallel == 0 || parallel > 128 {
            return None;
        }
        let len = uint(t, "len").unwrap_or(0);
        if len > u64::from(MAX_LEN) {
            return None;
        }
        Some(Params {
            parallel: parallel as u32,
            reverse: flag(t, "reverse"),
            bidir: flag(t, "bidirectional"),
            udp: flag(t, "udp"),
            len: len as u32,
            udp64: flag(t, "udp_counters_64bit"),
        })
    }
}

/// One stream's figures for the results JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamResult {
    pub bytes: u64,
    /// Seconds from the test start to the stream's end, in microseconds.
    pub end_us: u64,
    /// UDP: datagrams counted, datagrams lost, jitter (microseconds); 0 for TCP.
    pub packets: u64,
    pub errors: u64,
    pub jitter_us: u64,
}

/// Bytes of the header an iperf2 client starts its stream with (`client_hdr_v1`:
/// flags, threads, port, buffer length, window, amount; big-endian 32-bit words).
pub const IPERF2_HEADER: usize = 24;

/// What an iperf2 client that wants the server to send back asks for (`-d`: at once,
/// `-r`: after its own stream): connect to its address at `port` and send for
/// `amount`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dual {
    pub port: u16,
    /// Send while the client's own stream runs (`-d`), not after it (`-r`).
    pub now: bool,
    pub amount: Amount,
}

/// How much a test sends: for so long, or so many bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    Millis(u64),
    Bytes(u64),
}

/// The dual-test request in an iperf2 stream's first bytes, if any (the header's
/// HEADER_VERSION1 flag; RUN_NOW for `-d`). A plain client (2.1.8 without `-d`/`-r`
/// sends the header without HEADER_VERSION1) or a port of 0 asks for nothing.
pub fn dual_request(head: &[u8]) -> Option<Dual> {
    const HEADER_VERSION1: u32 = 0x8000_0000;
    const RUN_NOW: u32 = 1;
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            head.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    let flags = word(0)?;
    if flags & HEADER_VERSION1 == 0 {
        return None;
    }
    let port = u16::try_from(word(2)?).ok().filter(|&p| p != 0)?;
    let amount = word(5)? as i32;
    let amount = if amount < 0 {
        // Hundredths of a second.
        Amount::Millis(u64::from(amount.unsigned_abs()) * 10)
    } else {
        Amount::Bytes(amount as u64)
    };
    Some(Dual {
        port,
        now: flags & RUN_NOW != 0,
        amount,
    })
}

/// The datagram a UDP stream's client sends first, and the server's answer (both
/// 32-bit numbers in the sender's byte order: little-endian from x86 clients);
/// versions before 3.1 used [`UDP_CONNECT_LEGACY`] and its answer.
pub const UDP_CONNECT_MSG: u32 = 0x3637_3839;
pub const UDP_CONNECT_REPLY: u32 = 0x3938_3736;
pub const UDP_CONNECT_LEGACY: u32 = 123_456_789;
pub const UDP_CONNECT_LEGACY_REPLY: u32 = 987_654_321;

/// The answer to a UDP stream's first datagram, if it is a connect message.
pub fn udp_connect_reply(datagram: &[u8]) -> Option<[u8; 4]> {
    let msg = u32::from_le_bytes(datagram.try_into().ok()?);
    match msg {
        UDP_CONNECT_MSG => Some(UDP_CONNECT_REPLY.to_le_bytes()),
        UDP_CONNECT_LEGACY => Some(UDP_CONNECT_LEGACY_REPLY.to_le_bytes()),
        _ => None,
    }
}

/// A UDP stream's receive accounting, as iperf3's server keeps it: each datagram
/// starts with the sender's time (seconds, microseconds) and a sequence number (32
/// or, with `udp_counters_64bit`, 64 bits, big-endian), from which come the
/// datagrams lost (gaps; one that arrives late takes its loss back) and the jitter
/// (RFC 1889: a running average of the change in transit time, 1/16 per datagram).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCount {
    pub bytes: u64,
    /// The highest sequence number seen.
    pub packets: u64,
    pub lost: u64,
    pub out_of_order: u64,
    /// Jitter in nanoseconds, scaled by 16 (the running average's fraction).
    jitter16: i64,
    last_transit: Option<i64>,
}

impl UdpCount {
    /// Counts one datagram received at `now_ns` (our clock: only differences of
    /// transit times matter, so the clocks need not agree).
    pub fn datagram(&mut self, data: &[u8], counters64: bool, now_ns: u64) {
        self.bytes += data.len() as u64;
        let word = |at: usize| {
            data.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(sec), Some(usec)) = (word(0), word(4)) else {
            return;
        };
        let seq = if counters64 {
            match (word(8), word(12)) {
                (Some(hi), Some(lo)) => (u64::from(hi) << 32) | u64::from(lo),
                _ => return,
            }
        } else {
            match word(8) {
                Some(s) => u64::from(s),
                None => return,
            }
        };
        if seq > self.packets {
            self.lost += seq - self.packets - 1;
            self.packets = seq;
        } else {
            self.out_of_order += 1;
            self.lost = self.lost.saturating_sub(1);
        }
        let sent_ns = i64::from(sec) * 1_000_000_000 + i64::from(usec) * 1000;
        let transit = now_ns as i64 - sent_ns;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            self.jitter16 += d - self.jitter16 / 16;
        }
        self.last_transit = Some(transit);
    }

    /// The jitter in microseconds.
    pub fn jitter_us(&self) -> u64 {
        (self.jitter16 / 16 / 1000) as u64
    }
}

/// iperf3 numbers streams 1, 3, 4, 5, ... (2 was once the control connection).
pub fn stream_id(index: usize) -> usize {
    if index == 0 { 1 } else { index + 2 }
}

/// The server's results JSON (answer to EXCHANGE_RESULTS).
pub fn results_json(streams: &[StreamResult]) -> String {
    let mut out = String::from(
        "{\"cpu_util_total\":0,\"cpu_util_user\":0,\"cpu_util_system\":0,\
         \"sender_has_retransmits\":-1,\"streams\":[",
    );
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"id\":{},\"bytes\":{},\"retransmits\":-1,\"jitter\":{}.{:06},\"errors\":{},\
             \"packets\":{},\"start_time\":0,\"end_time\":{}.{:06}}}",
            stream_id(i),
            s.bytes,
            s.jitter_us / 1_000_000,
            s.jitter_us % 1_000_000,
            s.errors,
            s.packets,
            s.end_us / 1_000_000,
            s.end_us % 1_000_000
        ));
    }
    out.push_str("]}");
    out
}

/// Thousandths of a Gbit/s for `bytes` in `ns` nanoseconds.
pub fn milli_gbps(bytes: u64, ns: u64) -> u64 {
    if ns == 0 {
        return 0;
    }
    (u128::from(bytes) * 8000 / u128::from(ns)) as u64
}

/// `S.mmm` from nanoseconds.
pub fn seconds(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000_000, ns / 1_000_000 % 1000)
}

/// `G.mmm` from thousandths.
pub fn thousandths(milli: u64) -> String {
    format!("{}.{:03}", milli / 1000, milli % 1000)
}

/// The JSON line of one test.
pub fn test_json(
    proto: &str,
    port: u16,
    streams: usize,
    recv: usize,
    bytes: u64,
    ns: u64,
    compartments: u32,
) -> String {
    format!(
        "{{\"bench\":\"iperf\",\"proto\":\"{proto}\",\"port\":{port},\"streams\":{streams},\
         \"recv\":{recv},\"bytes\":{bytes},\"seconds\":{},\"gbps\":{},\"compartments\":{compartments}}}",
        seconds(ns),
        thousandths(milli_gbps(bytes, ns))
    )
}
