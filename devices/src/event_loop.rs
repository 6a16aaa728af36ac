//! A device's own thread: an `event-manager` loop over the kick EventFd of each queue
//! and a stop EventFd.
//!
//! The monitor registers each kick EventFd as a KVM ioeventfd on the QueueNotify
//! address, so a guest kick wakes this thread inside the kernel (~3 us) and the vCPU
//! never exits to userspace for it.

use std::io;
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::queue::{ChainHandler, QueueRunner};
use crate::virtio::StopFlag;

/// Runs queues when their kick EventFd fires.
pub struct QueueSubscriber<H> {
    queues: Vec<(QueueRunner<H>, EventFd)>,
}

impl<H: ChainHandler> QueueSubscriber<H> {
    /// `queues`: each runner with the kick EventFd that wakes it.
    pub fn new(queues: Vec<(QueueRunner<H>, EventFd)>) -> Self {
        QueueSubscriber { queues }
    }
}

impl<H: ChainHandler> MutEventSubscriber for QueueSubscriber<H> {
    fn init(&mut self, ops: &mut EventOps) {
        for (index, (_, kick)) in self.queues.iter().enumerate() {
            // Adding a fresh eventfd to a fresh epoll only fails when the kernel is
            // out of memory; the queue then stays asleep and the guest sees no answer.
            let _ = ops.add(Events::with_data(kick, index as u32, EventSet::IN));
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if let Some((runner, kick)) = self.queues.get_mut(events.data() as usize) {
            // Clear the counter first: a kick during processing wakes us again.
            let _ = kick.read();
            runner.process_queue_polling();
        }
    }
}

/// Wakes the loop so it sees the stop flag.
struct StopSubscriber {
    event: EventFd,
}

impl MutEventSubscriber for StopSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.event, EventSet::IN));
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.event.read();
    }
}

type Subscriber = Box<dyn MutEventSubscriber + Send>;

/// A running device thread; stopped and joined by [`DeviceThread::stop`] or on drop.
pub struct DeviceThread {
    stop: EventFd,
    stopping: StopFlag,
    handle: Option<JoinHandle<()>>,
}

impl DeviceThread {
    /// Starts a thread named `name` that runs `subscriber` until stopped.
    pub fn spawn<S>(name: &str, subscriber: S) -> io::Result<DeviceThread>
    where
        S: MutEventSubscriber + Send + 'static,
    {
        Self::spawn_with_stop(name, subscriber, StopFlag::default(), None)
    }

    /// [`Self::spawn`] with a stop flag the subscriber also holds, so work it is in the
    /// middle of gives up when the thread is stopped, and pinned to `cpu` if given.
    pub fn spawn_with_stop<S>(
        name: &str,
        subscriber: S,
        stopping: StopFlag,
        cpu: Option<usize>,
    ) -> io::Result<DeviceThread>
    where
        S: MutEventSubscriber + Send + 'static,
    {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let mut manager = EventManager::<Subscriber>::new()
            .map_err(|e| io::Error::other(format!("event manager: {e}")))?;
        manager.add_subscriber(Box::new(StopSubscriber {
            event: stop.try_clone()?,
        }));
        manager.add_subscriber(Box::new(subscriber));
        let flag = stopping.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    // Placement is a performance choice: a refusal (a CPU taken away
                    // meanwhile) leaves the thread where the scheduler puts it.
                    let _ = crate::affinity::pin_current_thread(cpu);
                }
                if let Some(hook) = THREAD_START.get() {
                    hook(std::thread::current().name().unwrap_or_default());
                }
                while !flag.is_set() {
                    // An epoll error other than EINTR (reported as 0 events) cannot be
                    // retried meaningfully: the device goes quiet, the monitor lives on.
                    if manager.run().is_err() {
                        break;
                    }
                }
            })?;
        Ok(DeviceThread {
            stop,
            stopping,
            handle: Some(handle),
        })
    }

    /// Stops the loop after the current batch and waits for the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        self.stopping.set();
        // Writing 1 to a fresh eventfd cannot overflow its counter.
        let _ = self.stop.write(1);
        let _ = handle.join();
    }
}

impl Drop for DeviceThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What every device thread runs once placed, before its loop, given its name (the
/// monitor installs the thread's seccomp filter there).
static THREAD_START: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Sets the hook every device thread calls before its loop, with its name; once per
/// process (a second hook is ignored).
pub fn on_thread_start(hook: fn(&str)) {
    let _ = THREAD_START.set(hook);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use virtio_bindings::bindings::virtio_blk::{VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
    use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
    use virtio_bindings::bindings::virtio_mmio::{VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_MMIO_STATUS};
    use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
    use vmm_sys_util::tempfile::TempFile;

    use crate::block::Block;
    use crate::testing::*;
    use crate::virtio::mmio::MmioTransport;

    /// Waits (spinning, as a polling guest does) until the device has used `n` chains.
    /// The bound only turns a hang into a failure.
    fn wait_used(d: &Driver, n: u16) {
        let give_up = Instant::now() + Duration::from_secs(20);
        while d.used_idx() != n {
            assert!(Instant::now() < give_up, "device thread never answered");
            std::thread::yield_now();
        }
    }

    #[test]
    fn device_thread_answers_kicks_and_stops_on_reset() {
        let file = TempFile::new().unwrap();
        std::fs::write(file.as_path(), vec![9u8; 4096]).unwrap();
        let mem = memory();
        let mut t =
            MmioTransport::new(Block::open(file.as_path(), false).unwrap(), mem.clone()).unwrap();
        let mut d = Driver::new(&mem, 16);
        d.init(
            &mut t,
            (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX),
        );

        // A kick as KVM delivers it for a registered ioeventfd.
        d.header(DATA, VIRTIO_BLK_T_IN, 1);
        d.chain(&[(DATA, 16, R), (DATA + 0x100, 512, W), (DATA + 0x80, 1, W)]);
        t.queue_event(0).unwrap().write(1).unwrap();
        wait_used(&d, 1);
        assert_eq!(d.bytes(DATA + 0x100, 512), vec![9; 512]);
        assert_eq!(d.byte(DATA + 0x80), 0);

        // A QueueNotify that exits to the monitor instead.
        d.header(DATA + 0x200, VIRTIO_BLK_T_OUT, 7);
        d.fill(DATA + 0x400, 512, 0x42);
        d.chain(&[
            (DATA + 0x200, 16, R),
            (DATA + 0x400, 512, R),
            (DATA + 0x81, 1, W),
        ]);
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        wait_used(&d, 2);
        assert_eq!(
            &std::fs::read(file.as_path()).unwrap()[3584..],
            &[0x42; 512][..]
        );

        // Reset joins the thread; the device is gone until the next DRIVER_OK.
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 0);
        assert!(!t.is_activated());
    }
}
