//! Queue processing shared by every device: pop chains, let the device model answer
//! each, put them on the used ring, and decide when to ask the guest for kicks again.
//!
//! # Poll, then sleep
//!
//! Guests here take no interrupts: a driver polls the used ring for its answer. With
//! RING_EVENT_IDX the device also controls when the guest kicks it. After a batch, the
//! runner keeps polling the available ring for [`DEFAULT_POLL`] before it re-enables
//! notifications and goes back to sleep on its kick EventFd, because on this host a
//! blocking wake-up (eventfd, futex) costs 21-46 us while an ioeventfd kick that finds
//! the thread awake costs ~3 us: a request that follows the previous answer within the
//! poll window (SQLite's commit issues several in a row) is taken without any wake-up.
//! The poll is bounded in time because the machine has two cores.
//!
//! # Adaptive window ([`QueueRunner::set_adaptive_poll`])
//!
//! Polling pays only when the next request comes within the window. When the device's
//! thread has no core of its own (as many busy vCPUs as host cores: in 2 compartments
//! one waits for the other's gate reply, the other for the device), a kick's wake-up
//! often runs the thread on the core of the vCPU that kicked, and its window then waits
//! for a request that this very vCPU, preempted, cannot post: each sync paid the whole
//! window. So an adaptive runner doubles its window (up to the poll time) when a
//! request came while it polled or soon after it went to sleep (within the poll time: a
//! longer window would have caught it), and halves it, down to not polling at all, when
//! the next request came later than that. With a spare core (1 compartment) the fixed
//! window is better: a preempted vCPU there makes the gaps long only for a while, and
//! an adaptive window would give up polling in exactly those moments.
//!
//! Re-enabling goes through virtio-queue's `enable_notification`, which publishes
//! `avail_event` and then re-reads the available index: a request the guest posted in
//! between is processed right away instead of being left for a kick that never comes.

use std::time::{Duration, Instant};

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use super::{GuestMemory, NeedsReset, StopFlag};
use crate::report::Report;

/// How long the runner polls an empty available ring before it sleeps.
pub const DEFAULT_POLL: Duration = Duration::from_micros(30);

/// A chain no reply can be written into (no usable status byte): the runner consumes
/// it with length 0 and marks the device DEVICE_NEEDS_RESET.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("unanswerable descriptor chain: {0}")]
pub struct Unanswerable(pub &'static str);

/// Why a chain got no answer.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error(transparent)]
    Unanswerable(#[from] Unanswerable),
    /// The device is stopping ([`StopFlag`]): the chain is left without a used entry
    /// and the queue is not touched again (it is dropped with the device).
    #[error("the device is stopping")]
    Stopped,
}

/// A device model's answer to one descriptor chain.
pub trait ChainHandler: Send {
    /// Handles one chain and writes its reply into guest memory; returns the number of
    /// bytes written for the used ring.
    fn handle(
        &mut self,
        mem: &GuestMemory,
        chain: DescriptorChain<&GuestMemory>,
    ) -> Result<u32, ChainError>;
}

/// Why a queue stopped working (the device then shows DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("available ring: {0}")]
    Ring(#[source] virtio_queue::Error),
    #[error("chain with head {head}: {source}")]
    Chain {
        head: u16,
        #[source]
        source: Unanswerable,
    },
    #[error("used ring, head {head}: {source}")]
    Used {
        head: u16,
        #[source]
        source: virtio_queue::Error,
    },
}

/// One queue of an activated device and the model answering its chains.
pub struct QueueRunner<H> {
    mem: GuestMemory,
    queue: Queue,
    handler: H,
    needs_reset: NeedsReset,
    poll: Duration,
    /// The window polled now, if adaptive (see the module docs).
    window: Option<Duration>,
    /// When the runner last went back to sleep (adaptive only).
    slept_at: Option<Instant>,
    failure: Option<QueueError>,
    /// Set when the device stops: no more chains are taken.
    stop: StopFlag,
    /// Told, in one line, why the queue stopped working.
    report: Option<Report>,
}

/// Shortest window an adaptive runner keeps polling; below it, it sleeps at once.
const MIN_WINDOW: Duration = Duration::from_micros(1);

/// The next adaptive window after one that saw a request while polling (`hit`) or
/// expired without one: doubled up to `max`, or halved down to nothing.
pub fn next_window(window: Duration, max: Duration, hit: bool) -> Duration {
    if hit {
        (window * 2).clamp(MIN_WINDOW, max)
    } else if window / 2 < MIN_WINDOW {
        Duration::ZERO
    } else {
        window / 2
    }
}

impl<H: ChainHandler> QueueRunner<H> {
    pub fn new(mem: GuestMemory, queue: Queue, handler: H, needs_reset: NeedsReset) -> Self {
        QueueRunner {
            mem,
            queue,
            handler,
            needs_reset,
            poll: DEFAULT_POLL,
            window: None,
            slept_at: None,
            failure: None,
            stop: StopFlag::default(),
            report: None,
        }
    }

    /// Where the runner says why the queue stopped working (a driver bug).
    pub fn set_report(&mut self, report: Report) {
        self.report = Some(report);
    }

    /// The flag that ends processing when the device stops (the device thread's).
    pub fn set_stop(&mut self, stop: StopFlag) {
        self.stop = stop;
    }

    /// Makes the poll window adaptive (see the module docs), starting at the poll time.
    pub fn set_adaptive_poll(&mut self, adaptive: bool) {
        self.window = adaptive.then_some(self.poll);
    }

    /// The window the next [`Self::process_queue_polling`] polls for.
    pub fn poll_window(&self) -> Duration {
        self.window.unwrap_or(self.poll)
    }

    /// Sets how long [`Self::process_queue_polling`] polls before it returns (the
    /// largest window, if adaptive).
    pub fn set_poll(&mut self, poll: Duration) {
        self.poll = poll;
        if let Some(w) = &mut self.window {
            *w = (*w).min(poll);
        }
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Why the queue stopped, if the guest broke it.
    pub fn failure(&self) -> Option<&QueueError> {
        self.failure.as_ref()
    }

    /// Answers every available chain, then re-enables notifications. For a VMM that
    /// calls it on each QueueNotify exit. Returns the number of chains answered.
    pub fn process_queue(&mut self) -> usize {
        self.run(Duration::ZERO)
    }

    /// Like [`Self::process_queue`], but keeps polling the available ring for the poll
    /// time after the last chain before re-enabling notifications (see module docs).
    pub fn process_queue_polling(&mut self) -> usize {
        if let Some(slept) = self.slept_at.take() {
            // Woken soon after going to sleep: a longer window would have caught it.
            let soon = slept.elapsed() < self.poll;
            self.adapt(soon);
        }
        let answered = self.run(self.poll_window());
        if self.window.is_some() {
            self.slept_at = Some(Instant::now());
        }
        answered
    }

    fn run(&mut self, poll: Duration) -> usize {
        if self.failure.is_some() {
            return 0;
        }
        // Whether the queue was seen empty since the last chain: a chain found after
        // that came while we polled (the adaptive window widens).
        let mut polling = false;
        let stop = self.stop.clone();
        let result = self
            .queue
            .disable_notification(&self.mem)
            .map_err(QueueError::Ring)
            .and_then(|()| {
                crate::runner::poll_then_sleep(
                    self,
                    poll,
                    || stop.is_set(),
                    |r| {
                        let n = r.drain()?;
                        if n > 0 && polling {
                            r.adapt(true);
                        }
                        polling = n == 0 && poll > Duration::ZERO;
                        Ok(n)
                    },
                    |r| {
                        if !r
                            .queue
                            .enable_notification(&r.mem)
                            .map_err(QueueError::Ring)?
                        {
                            return Ok(false);
                        }
                        // A chain arrived while notifications were off: take it now.
                        r.queue
                            .disable_notification(&r.mem)
                            .map_err(QueueError::Ring)?;
                        Ok(true)
                    },
                )
            });
        match result {
            Ok(answered) => answered,
            Err(e) => {
                self.record(e);
                0
            }
        }
    }

    /// Marks the queue failed for a reason outside the ring (its thread could not
    /// watch its kick): reported, and DEVICE_NEEDS_RESET.
    pub fn fail(&mut self, why: &str) {
        if let Some(report) = &self.report {
            report(&format!("{why}; the device needs a reset"));
        }
        self.needs_reset.raise();
    }

    fn record(&mut self, e: QueueError) {
        if let Some(report) = &self.report {
            report(&format!("{e}; the device needs a reset"));
        }
        self.failure = Some(e);
        // Last: whoever sees DEVICE_NEEDS_RESET finds the reason already reported.
        self.needs_reset.raise();
    }

    /// Moves the adaptive window after a poll that found a request (`hit`) or not.
    fn adapt(&mut self, hit: bool) {
        let max = self.poll;
        if let Some(w) = &mut self.window {
            *w = next_window(*w, max, hit);
        }
    }

    /// Answers the chains available now.
    fn drain(&mut self) -> Result<usize, QueueError> {
        let mut answered = 0;
        loop {
            if self.stop.is_set() {
                return Ok(answered);
            }
            // A fresh iterator per chain re-reads the available index and rejects one
            // more than a queue size ahead of us (a guest lying about its ring).
            let chain = match self.queue.iter(&self.mem) {
                Ok(mut iter) => iter.next(),
                Err(e) => return Err(QueueError::Ring(e)),
            };
            let Some(chain) = chain else {
                return Ok(answered);
            };
            let head = chain.head_index();
            let (len, fault) = match self.handler.handle(&self.mem, chain) {
                Ok(len) => (len, None),
                Err(ChainError::Unanswerable(e)) => (0, Some(e)),
                Err(ChainError::Stopped) => return Ok(answered),
            };
            self.queue
                .add_used(&self.mem, head, len)
                .map_err(|source| QueueError::Used { head, source })?;
            if let Some(source) = fault {
                return Err(QueueError::Chain { head, source });
            }
            answered += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adaptive_window_halves_to_nothing_and_doubles_back_to_the_poll_time() {
        let max = Duration::from_micros(30);
        let mut w = max;
        let mut seen = vec![w];
        while w > Duration::ZERO {
            w = next_window(w, max, false);
            seen.push(w);
        }
        assert_eq!(
            seen.iter().map(|d| d.as_nanos()).collect::<Vec<_>>(),
            [30_000, 15_000, 7_500, 3_750, 1_875, 0]
        );
        // From nothing, a request that came soon starts polling again.
        w = next_window(w, max, true);
        assert_eq!(w, MIN_WINDOW);
        for _ in 0..10 {
            w = next_window(w, max, true);
        }
        assert_eq!(w, max);
    }
}
