//! [`Hypercalls`]: the [`Platform`] an endpoint waits and wakes with inside a guest.
//!
//! rpc-shm's endpoint is transport-agnostic: it needs something to do in an idle spin
//! round, a latched sleep, and a doorbell. In a compartment these are `pause`, the
//! monitor's sleep hypercall (latched: it returns at once if the doorbell rang since
//! the previous sleep, which is exactly what the endpoint's lost-wake-up argument
//! needs) and the doorbell port, which the monitor binds to an ioeventfd per target so
//! ringing never reaches its userspace. Neither hypercall is on a hot path: the endpoint
//! only sleeps after a bounded spin, and only rings a peer that said it sleeps.

use rpc_shm::Platform;

use crate::hypercall;

/// The guest's [`Platform`]: `pause`, the sleep hypercall, the doorbell hypercall.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hypercalls;

impl Platform for Hypercalls {
    #[inline(always)]
    fn relax(&self) {
        core::hint::spin_loop();
    }

    fn sleep(&self, timeout_us: u64) {
        hypercall::sleep(timeout_us);
    }

    fn doorbell(&self, target: u32) {
        hypercall::doorbell(target);
    }
}
