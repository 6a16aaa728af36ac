//! `iperf`: an iperf2 server (port 5001) and an iperf3 server (port 5201) on the guest's
//! TCP/IP stack, for the stock `iperf -c` / `iperf3 -c` clients (FlexOS Figure 9).
//!
//! ```text
//! iperf [port=5001] [port3=5201] [recv=BYTES] [count=N] [idle=SECS] [ip=A.B.C.D/PREFIX]
//! ```
//!
//! `recv` is the size of each receive call (FlexOS's sweep); `count=N` exits 0 after
//! N tests; `idle=SECS` (default 10) closes connections that make no progress for that
//! long (see below). The stack's own `net.*` arguments pass through. Components: app, net (smoltcp), netdev (virtio-net driver); splits 1 =
//! everything, 2 = {app} | {net, netdev}, 3 = {app} | {net} | {netdev}. When ready it prints
//! `iperf: listening on IP ports P (iperf2) P3 (iperf3)`; after each connection a line
//! with its bytes, seconds and Gbit/s, and after each test one JSON line
//! (`{"bench":"iperf",...}`).
//!
//! An iperf2 test is a set of overlapping connections on the iperf2 port (`-P 2` opens
//! two) that carried bytes, and the connections back to clients that asked for a
//! dual test in their header (`-d`: the server connects to the client's port at once
//! and sends for the time or bytes asked; `-r`: after the client's own stream); an iperf3 test is one control connection and its streams.
//! The iperf3 server receives (the client's default), sends (`-R`: it writes blocks of
//! the client's `-l`, 128 KiB by default, into each stream's send ring until the
//! client's TEST_END) or both (`--bidir`: the client's sending streams come first);
//! `-P` up to 128 streams each way, `-t`, `-n`, `-J` work. UDP (`-u`) with the client
//! sending is served on a UDP endpoint on the iperf3 port: each stream's connect
//! datagram is answered, then its datagrams are counted (bytes, losses, jitter, as
//! iperf3's server reports them). UDP with the server sending (`-u -R`, `-u --bidir`)
//! is refused (SERVER_TERMINATE: the client says "the server has terminated"), as are
//! parameters that are not a JSON object. Every stream is closed at TEST_END, as iperf3's own
//! server does (a receiving client reads whole blocks and needs the FIN to end the
//! last one). The stack gets 12 connections (`-P 4 --bidir` is nine) and 1 MiB send
//! buffers (`LIMITS`).
//!
//! Neither server can be held up by a client that does not follow the protocol: an
//! iperf2 connection that sends nothing is not part of any test (the test of the others
//! ends without it) and is closed after `idle` seconds, as is one that goes silent
//! mid-test (its bytes count, it ends there); an iperf3 connection that does not start
//! with a well-formed cookie is closed as soon as a byte shows it, one whose cookie has
//! not come within `idle` seconds too, and a control connection that makes no progress
//! for `idle` seconds before its test runs (it holds the one test slot) is closed and
//! the next client served.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use flexos_kernel::{Args, boot_info, println, time};
use flexos_net::codes::describe;
use flexos_net::lockout::Limits;
use flexos_net::{Conn, Listener, Net, Recv, Sockets, sock};
use flexos_netdev::{Netdev, nic};
use iperf::{Config, USAGE};

mod three;

flexos_kernel::main!(main);

flexos_kernel::components! {
    components: [APP = "app", NET = "net", NETDEV = "netdev"],
    splits: [
        [("all", ["app", "net", "netdev"])],
        [("app", ["app"]), ("net", ["net", "netdev"])],
        [("app", ["app"]), ("net", ["net"]), ("netdev", ["netdev"])],
    ],
}

/// The driver, serving the stack through gates when it has its own compartment.
static NETDEV_SERVER: nic::Server<Netdev> = nic::Server(Netdev::new(NET));
/// The stack; its rings and wake-ups go to the app.
static NET_SERVER: sock::Server<Net> =
    sock::Server(Net::new(APP, NETDEV, &NETDEV_SERVER).with_limits(LIMITS));

/// The stack's bounds for iperf: room for `iperf3 -P 4 --bidir` (a control connection
/// and eight streams) beside an iperf2 test, and 256 KiB send buffers, since a sending
/// stream's rate is bounded by what it may have in flight (64 KiB, the default, held
/// `iperf3 -R` to a few Gbit/s).
const LIMITS: Limits = Limits {
    conns: 12,
    socket_tx: 1 << 20,
    ..Limits::DEFAULT
};

flexos_kernel::servers! {
    NET => flexos_net::sock(NET_SERVER),
    NETDEV => flexos_netdev::nic(NETDEV_SERVER),
}

flexos_kernel::pollers! {
    NET => NET_SERVER.0,
    NETDEV => NETDEV_SERVER.0,
}

/// Exit codes.
const EXIT_NET: i32 = 1;
const EXIT_USAGE: i32 = 2;

/// One data connection: the server receives on it, or sends (iperf3 `-R`, `--bidir`).
pub struct Stream {
    pub conn: Conn,
    /// The server sends on it; `bytes` counts what the stack took.
    pub send: bool,
    pub bytes: u64,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    /// When bytes last came (or the connection did).
    pub last_ns: u64,
    /// The first bytes (an iperf2 client's header, read for a dual-test request).
    pub head: Vec<u8>,
}

impl Stream {
    pub fn new(conn: Conn) -> Stream {
        let now = time::now_ns();
        Stream {
            conn,
            send: false,
            bytes: 0,
            start_ns: now,
            end_ns: None,
            last_ns: now,
            head: Vec::new(),
        }
    }

    /// Reads what is there (at most a few MiB, so other streams get their turn);
    /// returns whether anything happened. On a sending stream it only watches for the
    /// stream's end (what the client sends there is not counted): the connection
    /// must still be read, or a moved ring would never be taken.
    pub fn pump(&mut self, buf: &mut [u8]) -> Result<bool, i64> {
        if self.end_ns.is_some() {
            return Ok(false);
        }
        if self.send {
            return match self.conn.try_recv(buf) {
                Ok(Recv::Data(_)) => Ok(true),
                Ok(Recv::Empty) => Ok(false),
                Ok(Recv::End) | Err(_) => {
                    self.end_ns = Some(time::now_ns());
                    Ok(true)
                }
            };
        }
        let mut progress = false;
        let mut budget = 4u64 << 20;
        loop {
            match self.conn.try_recv(buf)? {
                Recv::Data(n) => {
                    if self.head.len() < iperf::IPERF2_HEADER {
                        let take = (iperf::IPERF2_HEADER - self.head.len()).min(n);
                        self.head.extend_from_slice(&buf[..take]);
                    }
                    self.bytes += n as u64;
                    if !progress {
                        self.last_ns = time::now_ns();
                    }
                    progress = true;
                    budget = budget.saturating_sub(n as u64 + 64);
                    if budget == 0 {
                        return Ok(true);
                    }
                }
                Recv::Empty => return Ok(progress),
                Recv::End => {
                    self.end_ns = Some(time::now_ns());
                    return Ok(true);
                }
            }
        }
    }

    pub fn ns(&self) -> u64 {
        self.end_ns.unwrap_or_else(time::now_ns) - self.start_ns
    }
}

/// Prints one connection's result line.
pub fn report(proto: &str, index: usize, s: &Stream) {
    let ns = s.ns();
    println!(
        "iperf: {proto} stream {index}: {} bytes in {} s = {} Gbit/s (ring {} KiB)",
        s.bytes,
        iperf::seconds(ns),
        iperf::thousandths(iperf::milli_gbps(s.bytes, ns)),
        s.conn.ring_capacity() >> 10
    );
}

/// Prints a test's JSON line.
pub fn report_test(proto: &str, port: u16, streams: &[Stream], recv: usize) {
    let bytes = streams.iter().map(|s| s.bytes).sum();
    let start = streams.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = streams
        .iter()
        .map(|s| s.end_ns.unwrap_or_else(time::now_ns))
        .max()
        .unwrap_or(start);
    println!(
        "{}",
        iperf::test_json(
            proto,
            port,
            streams.len(),
            recv,
            bytes,
            end - start,
            boot_info().compartment_count
        )
    );
}

/// A connection back to an iperf2 client that asked for a dual test.
struct Back {
    conn: Conn,
    bytes: u64,
    /// Bytes still to send (`u64::MAX`: for a time), and until when.
    left: u64,
    until_ns: Option<u64>,
    start_ns: u64,
    end_ns: Option<u64>,
    /// Its amount is sent; it ends once the stack has taken the ring's rest.
    over: bool,
}

struct Server {
    net: Sockets,
    config: Config,
    l2: Listener,
    l3: Listener,
    /// The running iperf2 test's connections.
    two: Vec<Stream>,
    /// Which of them were looked at for a dual-test request (`-d`, `-r`).
    asked: Vec<bool>,
    /// The connections back to iperf2 clients that asked for them.
    back: Vec<Back>,
    /// What the server sends on them.
    block: Vec<u8>,
    three: three::Three,
    tests: u32,
    last_stats: [u64; 12],
    /// The event counter when connections were last accepted.
    seen_events: u64,
}

fn main(args: &Args) -> i32 {
    let config = match Config::parse(args.iter()) {
        Ok(c) => c,
        Err(problem) => {
            println!("{problem}");
            println!("{USAGE}");
            return EXIT_USAGE;
        }
    };
    let net = match Sockets::new(&NET_SERVER, NET) {
        Ok(n) => n,
        Err(code) => {
            println!("iperf: the network stack is unusable: {}", describe(code));
            return EXIT_NET;
        }
    };
    let (l2, l3) = match (net.listen(config.port), net.listen(config.port3)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => {
            println!("iperf: cannot listen: {}", describe(code));
            return EXIT_NET;
        }
    };
    let ip = NET_SERVER.0.address();
    println!(
        "iperf: listening on {}.{}.{}.{} ports {} (iperf2) {} (iperf3)",
        ip[0], ip[1], ip[2], ip[3], config.port, config.port3
    );
    let mut server = Server {
        net,
        config,
        l2,
        l3,
        two: Vec::new(),
        asked: Vec::new(),
        back: Vec::new(),
        block: vec![0x5a; 128 << 10],
        three: three::Three::new(),
        tests: 0,
        last_stats: [0; 12],
        seen_events: u64::MAX,
    };
    match server.run() {
        Ok(()) => {
            server.net.linger(1_000_000_000);
            0
        }
        Err(code) => {
            println!("iperf: network error: {}", describe(code));
            EXIT_NET
        }
    }
}

/// A new connection on `l`, if any. A connection the stack could not set up (no
/// shared memory for its ring) is reported and skipped: the stack has reset it.
fn accept(net: &Sockets, l: Listener) -> Result<Option<Conn>, i64> {
    loop {
        match net.try_accept(l) {
            Err(code) if code == flexos_net::codes::E_NO_MEMORY => {
                println!("iperf: a connection was refused: {}", describe(code));
            }
            other => return other,
        }
    }
}

impl Server {
    fn run(&mut self) -> Result<(), i64> {
        let mut buf = vec![0u8; self.config.recv];
        loop {
            let mut progress = false;
            // New connections bump the event counter: ask for them (gate calls when
            // the stack is elsewhere) only then.
            let events = self.net.events();
            if events != self.seen_events {
                self.seen_events = events;
                while let Some(conn) = accept(&self.net, self.l2)? {
                    self.two.push(Stream::new(conn));
                    self.asked.push(false);
                    progress = true;
                }
                while let Some(conn) = accept(&self.net, self.l3)? {
                    self.three.arrived(conn);
                    progress = true;
                }
            }
            for s in &mut self.two {
                progress |= s.pump(&mut buf)?;
            }
            progress |= self.dual()?;
            progress |= self.tend_two()?;
            let (moved, finished) = self.three.pump(&self.net, &mut buf, &self.config)?;
            progress |= moved;
            if finished {
                self.tests += 1;
                self.stats();
            }
            if self.config.count != 0 && self.tests >= self.config.count {
                return Ok(());
            }
            if !progress {
                // Since the accept pass: a connection that came after it ends the wait,
                // and so does the first idle limit to pass.
                let seen = self.seen_events;
                let deadline = self.deadline();
                let (net, two, three, back) = (&self.net, &self.two, &self.three, &self.back);
                net.wait(|| {
                    net.events() != seen
                        || two.iter().any(|s| s.end_ns.is_none() && s.conn.readable())
                        || back.iter().any(|b| {
                            b.end_ns.is_none()
                                && (b.conn.readable()
                                    || if b.over {
                                        b.conn.stream_drained()
                                    } else {
                                        b.conn.send_space() >= 64 << 10
                                    })
                        })
                        || three.readable()
                        || time::now_ns() >= deadline
                });
            }
        }
    }

    fn idle_ns(&self) -> u64 {
        u64::from(self.config.idle) * 1_000_000_000
    }

    /// When the next idle limit passes (`u64::MAX`: none pending).
    fn deadline(&self) -> u64 {
        let two = self
            .two
            .iter()
            .filter(|s| s.end_ns.is_none())
            .map(|s| s.last_ns)
            .min();
        let idle = two
            .into_iter()
            .chain(self.three.idle_since())
            .min()
            .map_or(u64::MAX, |t| t.saturating_add(self.idle_ns()));
        let back = self
            .back
            .iter()
            .filter(|b| b.end_ns.is_none() && !b.over)
            .filter_map(|b| b.until_ns)
            .min()
            .unwrap_or(u64::MAX);
        idle.min(back)
    }

    /// Ends iperf2 connections silent for `idle` seconds, closes the ones that ended
    /// without a byte (they are no test), and finishes the test once every connection
    /// that carried bytes has ended. Returns whether anything happened.
    fn tend_two(&mut self) -> Result<bool, i64> {
        let now = time::now_ns();
        let idle = self.idle_ns();
        let mut progress = false;
        let mut i = 0;
        while i < self.two.len() {
            let s = &mut self.two[i];
            if s.end_ns.is_none() && now.saturating_sub(s.last_ns) >= idle {
                // Its bytes (if any) count up to the last of them.
                s.end_ns = Some(s.last_ns);
                let what = if s.bytes == 0 { "idle" } else { "silent" };
                println!(
                    "iperf: iperf2 connection closed: {what} for {} s",
                    self.config.idle
                );
                progress = true;
            }
            if s.bytes == 0 && s.end_ns.is_some() {
                self.asked.remove(i);
                let s = self.two.remove(i);
                self.net.close(s.conn)?;
                progress = true;
                continue;
            }
            i += 1;
        }
        let carried = |s: &Stream| s.bytes > 0;
        if self.two.iter().any(carried)
            && self.two.iter().all(|s| !carried(s) || s.end_ns.is_some())
            && self.back.iter().all(|b| b.end_ns.is_some())
        {
            self.finish_two()?;
            progress = true;
        }
        Ok(progress)
    }

    /// Reports and closes the finished test's connections; the ones that have not
    /// sent a byte yet stay for the next test.
    fn finish_two(&mut self) -> Result<(), i64> {
        type Asked = Vec<(Stream, bool)>;
        let (done, waiting): (Asked, Asked) = self
            .two
            .drain(..)
            .zip(self.asked.drain(..))
            .partition(|(s, _)| s.bytes > 0);
        let done: Vec<Stream> = done.into_iter().map(|(s, _)| s).collect();
        (self.two, self.asked) = waiting.into_iter().unzip();
        for (i, b) in core::mem::take(&mut self.back).into_iter().enumerate() {
            println!(
                "iperf: iperf2 stream back {i}: {} bytes in {} s = {} Gbit/s",
                b.bytes,
                iperf::seconds(b.end_ns.unwrap_or(b.start_ns) - b.start_ns),
                iperf::thousandths(iperf::milli_gbps(
                    b.bytes,
                    b.end_ns.unwrap_or(b.start_ns) - b.start_ns
                ))
            );
            self.net.close(b.conn)?;
        }
        for (i, s) in done.iter().enumerate() {
            report("iperf2", i, s);
        }
        report_test("iperf2", self.config.port, &done, self.config.recv);
        for s in done {
            self.net.close(s.conn)?;
        }
        self.tests += 1;
        self.stats();
        Ok(())
    }

    /// Dual tests (iperf2 `-d`, `-r`): a connection whose header asks for it gets a
    /// connection back to its client's port, on which the server sends for the
    /// amount asked (at once with `-d`, after the client's own stream with `-r`).
    /// Then every connection back is fed and ended. Returns whether anything happened.
    fn dual(&mut self) -> Result<bool, i64> {
        let mut progress = false;
        let now = time::now_ns();
        for (s, asked) in self.two.iter().zip(self.asked.iter_mut()) {
            if *asked || (s.head.len() < iperf::IPERF2_HEADER && s.end_ns.is_none()) {
                continue;
            }
            let Some(dual) = iperf::dual_request(&s.head) else {
                *asked = true;
                continue;
            };
            if !dual.now && s.end_ns.is_none() {
                continue;
            }
            *asked = true;
            progress = true;
            let (addr, _) = self.net.peer(&s.conn).unwrap_or(([0; 4], 0));
            match self.net.connect(addr, dual.port) {
                Ok(conn) => {
                    let (until_ns, left) = match dual.amount {
                        iperf::Amount::Millis(ms) => (Some(now + ms * 1_000_000), u64::MAX),
                        iperf::Amount::Bytes(n) => (None, n),
                    };
                    println!(
                        "iperf: iperf2 dual test: connecting back to {}.{}.{}.{} port {}",
                        addr[0], addr[1], addr[2], addr[3], dual.port
                    );
                    self.back.push(Back {
                        conn,
                        bytes: 0,
                        left,
                        until_ns,
                        start_ns: now,
                        end_ns: None,
                        over: false,
                    });
                }
                Err(code) => println!(
                    "iperf: iperf2 dual test: cannot connect back: {}",
                    describe(code)
                ),
            }
        }
        for b in &mut self.back {
            if b.end_ns.is_some() {
                continue;
            }
            b.over |= b.left == 0 || b.until_ns.is_some_and(|t| now >= t);
            let over = b.over;
            let mut scratch = [0u8; 256];
            let ended = matches!(b.conn.try_recv(&mut scratch), Ok(Recv::End) | Err(_));
            if (over && b.conn.stream_drained()) || ended {
                // (What is still in the ring would be lost at close: wait for it.)
                b.end_ns = Some(now);
                self.net.close_now(&mut b.conn)?;
                progress = true;
                continue;
            }
            if over {
                continue;
            }
            let n = (self.block.len() as u64).min(b.left) as usize;
            match self.net.stream(&mut b.conn, &self.block[..n]) {
                Ok(0) => {}
                Ok(n) => {
                    b.bytes += n as u64;
                    b.left -= n as u64;
                    progress = true;
                }
                Err(_) => {
                    b.end_ns = Some(now);
                    self.net.close_now(&mut b.conn)?;
                    progress = true;
                }
            }
        }
        Ok(progress)
    }

    /// The stack's counters since the previous test.
    fn stats(&mut self) {
        let now: [u64; 12] = core::array::from_fn(|i| self.net.stat(i as u16));
        let d: [u64; 12] = core::array::from_fn(|i| now[i] - self.last_stats[i]);
        self.last_stats = now;
        println!(
            "iperf: net: {} frames in ({} bytes each on average), {} out, {} kicks, {} sleeps, {} doorbells, {} ms in the stack, {} ms filling rings; lockout: {} half-open dropped, {} half-open timed out, {} idle resets, {} refused",
            d[0],
            d[1].checked_div(d[0]).unwrap_or(0),
            d[2],
            d[3],
            d[4],
            d[5],
            time::ticks_to_ns(d[6]) / 1_000_000,
            time::ticks_to_ns(d[7]) / 1_000_000,
            d[8],
            d[9],
            d[10],
            d[11]
        );
    }
}
