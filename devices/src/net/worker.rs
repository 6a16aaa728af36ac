//! The running device: both queues, the backend and the loop that moves frames between
//! them (see the crate's `net` docs for the policy).
//!
//! [`Worker::run`] does all the work there is, polls for [`Worker`]'s poll time, then
//! asks for kicks again and says whether the backend should be watched.
//! [`super::subscriber::NetSubscriber`] runs it on the device thread's epoll loop over
//! the two kick EventFds and the backend's descriptor; the device model can also run it
//! inline (tests, fuzzing).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::backend::Backend;
use super::chain::{buffers, ChainFault, Direction};
use super::{NetStats, Report, MAX_FRAME_LEN, VNET_HDR_LEN};
use crate::virtio::{GuestMemory, Interrupt, NeedsReset};

/// Why the device stopped: the driver broke the protocol (DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error)]
pub enum NetFault {
    #[error("{queue} queue: available ring: {source}")]
    Ring {
        queue: &'static str,
        #[source]
        source: virtio_queue::Error,
    },
    #[error("{queue} queue, chain {head}: {why}")]
    Chain {
        queue: &'static str,
        head: u16,
        why: ChainFault,
    },
    #[error("{queue} queue: used ring: {source}")]
    Used {
        queue: &'static str,
        #[source]
        source: virtio_queue::Error,
    },
    /// The device thread could not watch what wakes it (a kick, the backend).
    #[error("{0}")]
    Watch(String),
}

const RECEIVE: &str = "receive";
const TRANSMIT: &str = "transmit";

/// Room past a receive chain: a frame that spills into it was longer than the chain
/// (a backend whose MTU exceeds what the driver negotiated) and is counted, not cut.
const OVERFLOW_LEN: usize = 64 * 1024;

/// What the worker needs from the backend's epoll registration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Frames can be taken (the guest has receive buffers).
    pub readable: bool,
    /// A transmit waits for room in the backend.
    pub writable: bool,
}

/// Problems worth one line each, once per activation.
#[derive(Clone, Copy)]
enum Once {
    Oversized = 1,
    ReadError = 2,
    WriteError = 4,
    Closed = 8,
}

/// Both queues of an activated device and the backend.
pub struct Worker<B: Backend> {
    mem: GuestMemory,
    rx: Queue,
    tx: Queue,
    pub(super) backend: Arc<B>,
    interrupt: Interrupt,
    needs_reset: NeedsReset,
    stats: Arc<NetStats>,
    report: Report,
    /// Bytes every receive chain must hold: header and the largest frame.
    rx_need: u32,
    poll: Duration,
    /// The receive queue had no buffer last time we looked.
    rx_starved: bool,
    /// The backend refused a write with EAGAIN: wait until it is writable.
    tx_blocked: bool,
    /// The backend is closed or failed: nothing more is read from it.
    backend_gone: bool,
    failed: bool,
    reported: u8,
    overflow: Box<[u8]>,
}

/// How the worker is set up; see [`Worker::new`].
pub struct WorkerConfig<B: Backend> {
    pub mem: GuestMemory,
    pub rx: Queue,
    pub tx: Queue,
    pub backend: Arc<B>,
    pub interrupt: Interrupt,
    pub needs_reset: NeedsReset,
    pub stats: Arc<NetStats>,
    pub report: Report,
    pub rx_need: u32,
    pub poll: Duration,
}

impl<B: Backend> Worker<B> {
    pub fn new(c: WorkerConfig<B>) -> Self {
        Worker {
            mem: c.mem,
            rx: c.rx,
            tx: c.tx,
            backend: c.backend,
            interrupt: c.interrupt,
            needs_reset: c.needs_reset,
            stats: c.stats,
            report: c.report,
            rx_need: c.rx_need,
            poll: c.poll,
            rx_starved: false,
            tx_blocked: false,
            backend_gone: false,
            failed: false,
            reported: 0,
            overflow: vec![0u8; OVERFLOW_LEN].into_boxed_slice(),
        }
    }

    /// Moves every frame it can, polls a little, re-arms the guest's kicks and returns
    /// what to watch the backend for until the next event.
    pub fn run(&mut self) -> Interest {
        if let Err(fault) = self.run_until_idle() {
            self.fail(fault);
        }
        self.interest()
    }

    /// The backend can take writes again.
    pub fn backend_writable(&mut self) {
        self.tx_blocked = false;
    }

    /// The backend hung up or failed: stop reading it (writes fail and are counted).
    pub fn backend_closed(&mut self) {
        if !self.backend_gone {
            self.backend_gone = true;
            once(&mut self.reported, &self.report, Once::Closed, CLOSED);
        }
        self.tx_blocked = false;
    }

    fn interest(&self) -> Interest {
        if self.failed {
            return Interest::default();
        }
        Interest {
            readable: !self.rx_starved && !self.backend_gone,
            writable: self.tx_blocked,
        }
    }

    fn run_until_idle(&mut self) -> Result<(), NetFault> {
        if self.failed {
            return Ok(());
        }
        self.quiet()?;
        let poll = self.poll;
        crate::runner::poll_then_sleep(
            self,
            poll,
            || false,
            |w| Ok(w.transmit()? + w.receive()?),
            |w| {
                // About to sleep: ask for kicks on the queues we wait on.
                let tx_more = !w.tx_blocked
                    && w.tx
                        .enable_notification(&w.mem)
                        .map_err(|source| ring(TRANSMIT, source))?;
                // Receive kicks only matter while the guest has no buffers; otherwise
                // the backend's readiness wakes us.
                let rx_more = w.rx_starved
                    && !w.backend_gone
                    && w.rx
                        .enable_notification(&w.mem)
                        .map_err(|source| ring(RECEIVE, source))?;
                if tx_more || rx_more {
                    w.quiet()?;
                }
                Ok(tx_more || rx_more)
            },
        )
        .map(drop)
    }

    /// The device thread cannot watch what wakes it: the device fails (reported,
    /// DEVICE_NEEDS_RESET) rather than going quiet.
    pub fn cannot_watch(&mut self, why: String) {
        self.fail(NetFault::Watch(why));
    }

    fn quiet(&mut self) -> Result<(), NetFault> {
        self.tx
            .disable_notification(&self.mem)
            .map_err(|source| ring(TRANSMIT, source))?;
        self.rx
            .disable_notification(&self.mem)
            .map_err(|source| ring(RECEIVE, source))
    }

    /// Takes frames from the backend into receive chains until either runs out.
    fn receive(&mut self) -> Result<usize, NetFault> {
        if self.backend_gone {
            return Ok(0);
        }
        let mem = &self.mem;
        let fd = self.backend.as_raw_fd();
        let mut used = 0;
        loop {
            let chain = self
                .rx
                .iter(mem)
                .map_err(|source| ring(RECEIVE, source))?
                .next();
            let Some(chain) = chain else {
                self.rx_starved = true;
                break;
            };
            self.rx_starved = false;
            let head = chain.head_index();
            let bufs = match buffers(chain, mem, Direction::Receive { need: self.rx_need }) {
                Ok(b) => b,
                Err(why) => {
                    self.rx
                        .add_used(mem, head, 0)
                        .map_err(|source| used_ring(RECEIVE, source))?;
                    return Err(NetFault::Chain {
                        queue: RECEIVE,
                        head,
                        why,
                    });
                }
            };
            let mut iov = bufs.iovecs().to_vec();
            iov.push(libc::iovec {
                iov_base: self.overflow.as_mut_ptr().cast(),
                iov_len: self.overflow.len(),
            });
            // Fits: at most MAX_SEGMENTS + 1 = IOV_MAX entries.
            let count = iov.len() as libc::c_int;
            // SAFETY: every iovec points into guest memory that `mem` keeps mapped for
            // the duration of the call (checked against the device's memory by
            // `buffers`) or into our own overflow buffer; readv writes at most
            // iov_len bytes into each.
            let n = unsafe { libc::readv(fd, iov.as_ptr(), count) };
            if n < 0 {
                let e = io::Error::last_os_error();
                self.rx.go_to_previous_position();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.stats.rx_errors.fetch_add(1, Ordering::Relaxed);
                        once(
                            &mut self.reported,
                            &self.report,
                            Once::ReadError,
                            &format!(
                                "reading the backend failed ({e}); no more frames are received"
                            ),
                        );
                        self.backend_gone = true;
                        break;
                    }
                }
            }
            // n >= 0 here.
            let n = n as u64;
            if n == 0 {
                self.rx.go_to_previous_position();
                self.backend_gone = true;
                once(&mut self.reported, &self.report, Once::Closed, CLOSED);
                break;
            }
            if n > bufs.len() {
                // The frame was longer than the chain (checked to hold the largest
                // negotiated frame): the host sends frames above its MTU. Never cut:
                // count it and let the guest's buffer take the next frame.
                self.rx.go_to_previous_position();
                self.stats.rx_oversized.fetch_add(1, Ordering::Relaxed);
                once(
                    &mut self.reported,
                    &self.report,
                    Once::Oversized,
                    &format!(
                        "dropped a {n}-byte frame longer than the negotiated {} bytes (is the tap's MTU above 1500 without GUEST_TSO4?)",
                        self.rx_need
                    ),
                );
                continue;
            }
            if n < VNET_HDR_LEN as u64 {
                self.rx.go_to_previous_position();
                self.stats.rx_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Without MRG_RXBUF every frame fills one chain: num_buffers is 1.
            bufs.write_at(mem, 10, &1u16.to_le_bytes());
            // n <= the chain's length, which fits a u32 (virtio-queue ends chains
            // before 4 GiB).
            self.rx
                .add_used(mem, head, n as u32)
                .map_err(|source| used_ring(RECEIVE, source))?;
            self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
            self.stats
                .rx_bytes
                .fetch_add(n - VNET_HDR_LEN as u64, Ordering::Relaxed);
            used += 1;
        }
        if used > 0 {
            self.interrupt
                .signal_used(&mut self.rx, &self.mem)
                .map_err(|source| used_ring(RECEIVE, source))?;
        }
        Ok(used)
    }

    /// Hands every transmit chain to the backend.
    fn transmit(&mut self) -> Result<usize, NetFault> {
        if self.tx_blocked {
            return Ok(0);
        }
        let mem = &self.mem;
        let fd = self.backend.as_raw_fd();
        let mut used = 0;
        loop {
            let chain = self
                .tx
                .iter(mem)
                .map_err(|source| ring(TRANSMIT, source))?
                .next();
            let Some(chain) = chain else {
                break;
            };
            let head = chain.head_index();
            let max = (VNET_HDR_LEN + MAX_FRAME_LEN) as u32;
            let bufs = match buffers(chain, mem, Direction::Transmit { max }) {
                Ok(b) => b,
                Err(why) => {
                    self.tx
                        .add_used(mem, head, 0)
                        .map_err(|source| used_ring(TRANSMIT, source))?;
                    return Err(NetFault::Chain {
                        queue: TRANSMIT,
                        head,
                        why,
                    });
                }
            };
            let iov = bufs.iovecs();
            // Fits: at most MAX_SEGMENTS entries.
            let count = iov.len() as libc::c_int;
            // SAFETY: every iovec points into guest memory that `mem` keeps mapped for
            // the duration of the call (checked by `buffers`); writev only reads them.
            let n = unsafe { libc::writev(fd, iov.as_ptr(), count) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.tx.go_to_previous_position();
                        self.tx_blocked = true;
                        break;
                    }
                    io::ErrorKind::Interrupted => {
                        self.tx.go_to_previous_position();
                        continue;
                    }
                    _ => {
                        // The host refused this frame (a bad vnet header, a closed
                        // backend): the frame is the guest's to lose, counted.
                        self.stats.tx_errors.fetch_add(1, Ordering::Relaxed);
                        once(
                            &mut self.reported,
                            &self.report,
                            Once::WriteError,
                            &format!("the backend refused a transmitted frame ({e})"),
                        );
                    }
                }
            } else {
                self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .tx_bytes
                    .fetch_add(bufs.len() - VNET_HDR_LEN as u64, Ordering::Relaxed);
            }
            self.tx
                .add_used(mem, head, 0)
                .map_err(|source| used_ring(TRANSMIT, source))?;
            used += 1;
        }
        if used > 0 {
            self.interrupt
                .signal_used(&mut self.tx, &self.mem)
                .map_err(|source| used_ring(TRANSMIT, source))?;
        }
        Ok(used)
    }

    fn fail(&mut self, fault: NetFault) {
        self.failed = true;
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        let text = format!("{fault}; the device needs a reset");
        (self.report)(&text);
        *self
            .stats
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
        // Last: whoever sees DEVICE_NEEDS_RESET (the driver, a test) finds the reason
        // already reported and counted.
        self.needs_reset.raise();
    }
}

const CLOSED: &str = "the backend closed; no more frames are received";

/// Reports `text` unless `what` was reported before.
fn once(reported: &mut u8, report: &Report, what: Once, text: &str) {
    if *reported & what as u8 == 0 {
        *reported |= what as u8;
        report(text);
    }
}

fn ring(queue: &'static str, source: virtio_queue::Error) -> NetFault {
    NetFault::Ring { queue, source }
}

fn used_ring(queue: &'static str, source: virtio_queue::Error) -> NetFault {
    NetFault::Used { queue, source }
}
