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

use crate::runner::ThreadSpec;
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
        for (index, (runner, kick)) in self.queues.iter_mut().enumerate() {
            // A queue whose kick cannot be watched would never be served: it fails, and
            // the guest sees DEVICE_NEEDS_RESET and the reason instead of silence.
            if let Err(e) = ops.add(Events::with_data(kick, index as u32, EventSet::IN)) {
                runner.fail(&format!("cannot watch the kick of queue {index}: {e}"));
            }
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
    /// Why the stop EventFd could not be watched, if it could not.
    failed: std::sync::Arc<std::sync::Mutex<Option<io::Error>>>,
}

impl MutEventSubscriber for StopSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.event, EventSet::IN)) {
            *self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(io::Error::other(
                format!("cannot watch the stop event: {e}"),
            ));
        }
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
    /// Starts a thread named `name` that runs `subscriber` until stopped (a failure of
    /// its event loop ends the thread unreported: tests).
    pub fn spawn<S>(name: &'static str, subscriber: S) -> io::Result<DeviceThread>
    where
        S: MutEventSubscriber + Send + 'static,
    {
        let spec = ThreadSpec {
            name,
            stop: StopFlag::default(),
            cpu: None,
            on_failure: Box::new(|_| {}),
        };
        Self::spawn_with(spec, subscriber)
    }

    /// Starts the thread `spec` describes: named, pinned to its CPU if given, stopped
    /// through its stop flag (which the subscriber may share, so work in the middle of
    /// a request gives up), and telling `spec.on_failure` if its event loop fails.
    pub fn spawn_with<S>(spec: ThreadSpec, subscriber: S) -> io::Result<DeviceThread>
    where
        S: MutEventSubscriber + Send + 'static,
    {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let mut manager = EventManager::<Subscriber>::new()
            .map_err(|e| io::Error::other(format!("event manager: {e}")))?;
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        // Registration runs `init` now: a loop nothing could wake to stop is refused
        // before it starts.
        manager.add_subscriber(Box::new(StopSubscriber {
            event: stop.try_clone()?,
            failed: failed.clone(),
        }));
        if let Some(e) = failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        manager.add_subscriber(Box::new(subscriber));
        let flag = spec.stop.clone();
        let (cpu, on_failure) = (spec.cpu, spec.on_failure);
        let handle = std::thread::Builder::new()
            .name(spec.name.to_owned())
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
                    // retried meaningfully: the device stops, says why, and the guest
                    // sees DEVICE_NEEDS_RESET; the monitor lives on.
                    if let Err(e) = manager.run() {
                        on_failure(&format!("its event loop failed: {e}; the device stops"));
                        break;
                    }
                }
            })?;
        Ok(DeviceThread {
            stop,
            stopping: spec.stop,
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

    /// A device thread that cannot watch its queue's kick says so and shows
    /// DEVICE_NEEDS_RESET instead of leaving the guest's requests unanswered in
    /// silence. The kick EventFd's descriptor is replaced by /dev/null before the
    /// driver starts the device: epoll refuses to watch it.
    #[test]
    fn a_kick_the_thread_cannot_watch_is_reported_and_needs_reset() {
        use std::os::fd::AsRawFd;
        use std::sync::{Arc, Mutex};
        use virtio_bindings::bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;

        let file = TempFile::new().unwrap();
        std::fs::write(file.as_path(), vec![0u8; 4096]).unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let block = Block::open(file.as_path(), false)
            .unwrap()
            .with_report(Arc::new(move |t: &str| {
                sink.lock().unwrap().push(t.to_string())
            }));
        let mem = memory();
        let mut t = MmioTransport::new(block, mem.clone()).unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let kick = t.queue_event(0).unwrap().as_raw_fd();
        // SAFETY: both descriptors are open; dup2 makes `kick` another name for
        // /dev/null, which the EventFd then owns and closes as before.
        assert_eq!(unsafe { libc::dup2(devnull.as_raw_fd(), kick) }, kick);
        let d = Driver::new(&mem, 16);
        let status = d.init(&mut t, 1 << VIRTIO_F_VERSION_1);
        assert_eq!(
            status & VIRTIO_CONFIG_S_NEEDS_RESET,
            VIRTIO_CONFIG_S_NEEDS_RESET
        );
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("cannot watch the kick of queue 0: ")
                && lines[0].ends_with("; the device needs a reset"),
            "{lines:?}"
        );
    }
}
