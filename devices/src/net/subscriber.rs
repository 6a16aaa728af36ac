//! The device thread's side of the worker: an `event-manager` subscriber over the two
//! kick EventFds and the backend's descriptor. The backend is watched only for what
//! [`Worker::run`] asks (readable while the guest has receive buffers, writable while a
//! transmit waits), so a guest without buffers costs the thread no wake-ups.

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::backend::Backend;
use super::worker::{Interest, Worker};

/// Event data of the device thread's epoll registrations.
const RX_KICK: u32 = 0;
const TX_KICK: u32 = 1;
const BACKEND: u32 = 2;

/// The worker on the device thread's epoll loop: kicks and backend readiness run it;
/// the backend is watched only for what [`Worker::run`] asks.
pub struct NetSubscriber<B: Backend> {
    worker: Worker<B>,
    rx_kick: EventFd,
    tx_kick: EventFd,
    registered: Option<EventSet>,
}

impl<B: Backend> NetSubscriber<B> {
    pub fn new(worker: Worker<B>, rx_kick: EventFd, tx_kick: EventFd) -> Self {
        NetSubscriber {
            worker,
            rx_kick,
            tx_kick,
            registered: None,
        }
    }

    fn watch(&mut self, want: Interest, ops: &mut EventOps) {
        let mut set = EventSet::empty();
        if want.readable {
            set |= EventSet::IN;
        }
        if want.writable {
            set |= EventSet::OUT;
        }
        let fd = self.worker.backend.as_raw_fd();
        // Registration errors (ENOMEM) leave the old registration: at worst the
        // device misses a wake-up until the next kick.
        match self.registered {
            None if set.is_empty() => {}
            None => {
                if ops.add(Events::with_data_raw(fd, BACKEND, set)).is_ok() {
                    self.registered = Some(set);
                }
            }
            Some(old) if set.is_empty() => {
                if ops.remove(Events::with_data_raw(fd, BACKEND, old)).is_ok() {
                    self.registered = None;
                }
            }
            Some(old) if old != set => {
                if ops.modify(Events::with_data_raw(fd, BACKEND, set)).is_ok() {
                    self.registered = Some(set);
                }
            }
            Some(_) => {}
        }
    }
}

impl<B: Backend> MutEventSubscriber for NetSubscriber<B> {
    fn init(&mut self, ops: &mut EventOps) {
        // A queue whose kick cannot be watched would never be served: the device fails,
        // and the guest sees DEVICE_NEEDS_RESET and the reason instead of silence.
        for (kick, data, name) in [
            (&self.rx_kick, RX_KICK, "receive"),
            (&self.tx_kick, TX_KICK, "transmit"),
        ] {
            if let Err(e) = ops.add(Events::with_data(kick, data, EventSet::IN)) {
                self.worker
                    .cannot_watch(format!("cannot watch the kick of the {name} queue: {e}"));
            }
        }
        // Buffers the driver posted before DRIVER_OK.
        let want = self.worker.run();
        self.watch(want, ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut closed = false;
        match events.data() {
            // Clear the counter first: a kick during the run wakes us again.
            RX_KICK => {
                let _ = self.rx_kick.read();
            }
            TX_KICK => {
                let _ = self.tx_kick.read();
            }
            _ => {
                let set = events.event_set();
                if set.contains(EventSet::OUT) {
                    self.worker.backend_writable();
                }
                closed = set.intersects(EventSet::HANG_UP | EventSet::ERROR);
            }
        }
        let mut want = self.worker.run();
        if closed {
            // epoll reports a hang-up whatever we ask for: take what is left to read,
            // then stop watching it.
            self.worker.backend_closed();
            want = self.worker.run();
        }
        self.watch(want, ops);
    }
}
