//! Where a started device does its work, and the loop it does it in; one for every
//! device model (virtio-blk and virtio-net differ only in what one step is).
//!
//! - [`Execution`] / [`Running`]: the work runs on a thread of its own (woken by its
//!   kick EventFds, ioeventfds the monitor registers) or inline, on the thread that
//!   writes QueueNotify (a device run in its owner's vCPU thread, tests, fuzzing).
//! - [`poll_then_sleep`]: do what is available; while that finds work, or for the poll
//!   window after it last did, do it again; then re-arm the guest's notifications, and
//!   go on at once if work arrived while they were off (virtio-queue's
//!   `enable_notification` re-reads the available index after publishing
//!   `avail_event`, so a request posted in between is taken now, not left for a kick
//!   the driver will never send). On this host a blocking wake-up costs 20-40 us and a
//!   kick that finds the thread awake ~3 us: a request that follows its predecessor
//!   within the window costs no wake-up. The window is bounded: the machine has two
//!   cores.

use std::time::{Duration, Instant};

use event_manager::MutEventSubscriber;
use vmm_sys_util::eventfd::EventFd;

use crate::event_loop::DeviceThread;
use crate::virtio::{ActivateError, StopFlag};

/// Where a device's queues run once the driver starts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Execution {
    /// On the device's own thread, woken by its kick EventFds (the monitor registers
    /// them as ioeventfds).
    OwnThread,
    /// On the caller's thread: each QueueNotify that reaches the transport runs the
    /// work (a device in its owner's vCPU thread; tests and fuzzing: deterministic).
    Inline,
}

/// A started device's work `W`, wherever it runs.
pub enum Running<W> {
    Stopped,
    Inline(Box<W>),
    /// The thread (stopped and joined on drop) and clones of the kick EventFds.
    Thread {
        _thread: DeviceThread,
        kicks: Vec<EventFd>,
    },
}

/// How a device thread is started.
pub struct ThreadSpec {
    pub name: &'static str,
    pub stop: StopFlag,
    pub cpu: Option<usize>,
    /// Told, in one line, why the thread's event loop stopped working (the device then
    /// shows DEVICE_NEEDS_RESET).
    pub on_failure: Box<dyn Fn(&str) + Send>,
}

impl<W> Running<W> {
    /// Starts `work` as `execution` says: kept to run inline, or handed to a thread
    /// (`spec`) running the subscriber `subscriber(work, kicks)` builds.
    pub fn start<S>(
        execution: Execution,
        work: W,
        kicks: Vec<EventFd>,
        spec: ThreadSpec,
        subscriber: impl FnOnce(W, Vec<EventFd>) -> S,
    ) -> Result<Running<W>, ActivateError>
    where
        S: MutEventSubscriber + Send + 'static,
    {
        match execution {
            Execution::Inline => Ok(Running::Inline(Box::new(work))),
            Execution::OwnThread => {
                let clones = kicks
                    .iter()
                    .map(EventFd::try_clone)
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(ActivateError::Thread)?;
                let thread = DeviceThread::spawn_with(spec, subscriber(work, kicks))
                    .map_err(ActivateError::Thread)?;
                Ok(Running::Thread {
                    _thread: thread,
                    kicks: clones,
                })
            }
        }
    }

    /// A QueueNotify write that reached the transport: run the work now if inline,
    /// else signal the queue's kick (what KVM does for a registered ioeventfd).
    pub fn notify(&mut self, queue: u16, inline: impl FnOnce(&mut W)) {
        match self {
            Running::Inline(work) => inline(work),
            // A full counter (2^64 - 2 kicks) is impossible: the thread drains it.
            Running::Thread { kicks, .. } => {
                if let Some(kick) = kicks.get(usize::from(queue)) {
                    let _ = kick.write(1);
                }
            }
            Running::Stopped => {}
        }
    }

    /// The inline work, if it runs inline.
    pub fn inline(&mut self) -> Option<&mut W> {
        match self {
            Running::Inline(work) => Some(work),
            _ => None,
        }
    }
}

/// See the module docs. `step` does what is available in `state` and returns how much
/// it did; `rearm` re-enables the guest's notifications and returns whether work
/// arrived while they were off (then the loop goes on); `stopped` ends the loop early.
/// Returns the total `step` reported.
pub fn poll_then_sleep<T, E>(
    state: &mut T,
    poll: Duration,
    stopped: impl Fn() -> bool,
    mut step: impl FnMut(&mut T) -> Result<usize, E>,
    mut rearm: impl FnMut(&mut T) -> Result<bool, E>,
) -> Result<usize, E> {
    let mut total = 0;
    let mut deadline = Instant::now() + poll;
    loop {
        let n = step(state)?;
        if stopped() {
            return Ok(total + n);
        }
        if n > 0 {
            total += n;
            deadline = Instant::now() + poll;
            continue;
        }
        if Instant::now() < deadline {
            std::hint::spin_loop();
            continue;
        }
        if !rearm(state)? {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of work still to come, and how many re-arms happened.
    struct Queue {
        batches: Vec<usize>,
        rearms: u32,
    }

    #[test]
    fn work_found_while_rearming_is_done_before_sleeping() {
        // Two batches, the second found only by the first re-arm.
        let mut q = Queue {
            batches: vec![2, 0, 5],
            rearms: 0,
        };
        let step = |q: &mut Queue| -> Result<usize, ()> {
            Ok(if q.batches.is_empty() {
                0
            } else {
                q.batches.remove(0)
            })
        };
        let rearm = |q: &mut Queue| -> Result<bool, ()> {
            q.rearms += 1;
            Ok(q.rearms == 1)
        };
        let done = poll_then_sleep(&mut q, Duration::ZERO, || false, step, rearm).unwrap();
        assert_eq!(done, 7);
        assert_eq!(q.rearms, 2);
    }

    #[test]
    fn a_stop_ends_the_loop_and_errors_pass_through() {
        let done = poll_then_sleep(
            &mut (),
            Duration::from_secs(60),
            || true,
            |_| Ok::<_, ()>(3),
            |_| unreachable!("stopped before re-arming"),
        );
        assert_eq!(done, Ok(3));
        let failed = poll_then_sleep(
            &mut (),
            Duration::ZERO,
            || false,
            |_| Err::<usize, _>("ring"),
            |_| Ok(false),
        );
        assert_eq!(failed, Err("ring"));
    }
}
