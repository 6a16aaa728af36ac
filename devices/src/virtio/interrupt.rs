//! Device -> guest notification without interrupts.
//!
//! Guests here take no interrupts: a driver polls its used rings, and when it has
//! nothing to do it sleeps with the sleep hypercall on its compartment's doorbell
//! EventFd. A device that has an [`Interrupt`] writes that EventFd after putting buffers
//! on a used ring, but only when virtio-queue's `needs_notification` says the driver
//! asked for it: with RING_EVENT_IDX that is when the used index passes the driver's
//! `used_event`, so a driver that is busy polling suppresses every wake-up (and the
//! eventfd write that comes with it); without EVENT_IDX it is after every batch.

use std::io;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::GuestMemory;

/// The optional EventFd a device signals used buffers on (see the module docs).
#[derive(Debug, Default)]
pub struct Interrupt {
    event: Option<EventFd>,
}

impl Interrupt {
    pub fn new(event: Option<EventFd>) -> Self {
        Interrupt { event }
    }

    /// True when a guest can be woken through it.
    pub fn is_connected(&self) -> bool {
        self.event.is_some()
    }

    pub fn try_clone(&self) -> io::Result<Interrupt> {
        Ok(Interrupt {
            event: self.event.as_ref().map(EventFd::try_clone).transpose()?,
        })
    }

    /// Call after a batch of `add_used` on `queue`: writes the EventFd if the driver
    /// asked to be notified of these buffers. Returns whether it did. An error is a
    /// used ring (its `used_event`) outside guest memory.
    pub fn signal_used(
        &self,
        queue: &mut Queue,
        mem: &GuestMemory,
    ) -> Result<bool, virtio_queue::Error> {
        let Some(event) = &self.event else {
            return Ok(false);
        };
        if !queue.needs_notification(mem)? {
            return Ok(false);
        }
        // The counter only saturates after 2^64 - 2 writes without a read; the guest's
        // sleep reads it, and a failed write leaves a polling guest unaffected.
        let _ = event.write(1);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use virtio_queue::QueueOwnedT;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    use super::*;
    use crate::testing::*;

    const SIZE: u16 = 16;

    fn queue(event_idx: bool) -> Queue {
        let mut q = Queue::new(SIZE).unwrap();
        q.try_set_desc_table_address(GuestAddress(DESC)).unwrap();
        q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
        q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
        q.set_event_idx(event_idx);
        q.set_ready(true);
        q
    }

    /// The driver's `used_event`: the slot after the available ring.
    fn set_used_event(mem: &GuestMemory, value: u16) {
        let at = AVAIL + 4 + 2 * u64::from(SIZE);
        mem.write_obj(value.to_le(), GuestAddress(at)).unwrap();
    }

    /// Takes the next available chain and puts it on the used ring.
    fn use_one(q: &mut Queue, mem: &GuestMemory) {
        let head = q.iter(mem).unwrap().next().unwrap().head_index();
        q.add_used(mem, head, 0).unwrap();
    }

    fn readable(e: &EventFd) -> bool {
        e.read().is_ok()
    }

    #[test]
    fn used_buffers_wake_the_guest_when_used_event_asks_and_not_otherwise() {
        let mem = memory();
        let mut d = Driver::new(&mem, SIZE);
        let event = EventFd::new(EFD_NONBLOCK).unwrap();
        let irq = Interrupt::new(Some(event.try_clone().unwrap()));
        let mut q = queue(true);

        // used_event 0: the driver wants to hear of the first used buffer.
        set_used_event(&mem, 0);
        d.chain(&[(DATA, 16, W)]);
        use_one(&mut q, &mem);
        assert!(irq.signal_used(&mut q, &mem).unwrap());
        assert!(readable(&event));

        // used_event 5: a polling driver suppresses the next buffers (used idx 2..=5).
        set_used_event(&mem, 5);
        for _ in 0..4 {
            d.chain(&[(DATA, 16, W)]);
            use_one(&mut q, &mem);
            assert!(!irq.signal_used(&mut q, &mem).unwrap());
            assert!(!readable(&event));
        }
        // The sixth used buffer (index 5 -> 6) passes used_event: wake up.
        d.chain(&[(DATA, 16, W)]);
        use_one(&mut q, &mem);
        assert!(irq.signal_used(&mut q, &mem).unwrap());
        assert!(readable(&event));
    }

    #[test]
    fn without_event_idx_every_batch_signals_and_without_eventfd_nothing_does() {
        let mem = memory();
        let mut d = Driver::new(&mem, SIZE);
        let event = EventFd::new(EFD_NONBLOCK).unwrap();
        let irq = Interrupt::new(Some(event.try_clone().unwrap()));
        let mut q = queue(false);
        d.chain(&[(DATA, 16, W)]);
        use_one(&mut q, &mem);
        assert!(irq.signal_used(&mut q, &mem).unwrap());
        assert!(readable(&event));

        let none = Interrupt::default();
        assert!(!none.is_connected());
        d.chain(&[(DATA, 16, W)]);
        use_one(&mut q, &mem);
        assert!(!none.signal_used(&mut q, &mem).unwrap());
    }
}
