//! Doorbells: compartment `id` sleeps on `eventfds[id]`; any compartment rings it with
//! `out PORT_DOORBELL, id`, which an ioeventfd catches in the kernel.

use flexos_abi::PORT_DOORBELL;
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Result, VmmError};

/// Every compartment's doorbell: compartment `id` sleeps on `eventfds[id]`; any
/// compartment rings it with `out PORT_DOORBELL, id`, caught in the kernel by an
/// ioeventfd so the ringer never exits to userspace.
pub struct Doorbells {
    eventfds: Vec<EventFd>,
}

impl Doorbells {
    pub fn new(count: u32) -> Result<Self> {
        let eventfds = (0..count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| VmmError::Doorbell {
                what: "create",
                source: e,
            })?;
        Ok(Doorbells { eventfds })
    }

    pub(super) fn bind(&self, vm: &VmFd) -> Result<()> {
        for (target, evt) in (0u32..).zip(&self.eventfds) {
            vm.register_ioevent(evt, &IoEventAddress::Pio(PORT_DOORBELL as u64), target)
                .map_err(VmmError::kvm("KVM_IOEVENTFD (doorbell)"))?;
        }
        Ok(())
    }

    pub(super) fn own(&self, id: u32) -> Result<EventFd> {
        self.eventfds[id as usize]
            .try_clone()
            .map_err(|e| VmmError::Doorbell {
                what: "clone",
                source: e,
            })
    }
}
