//! Attaching a device to the compartment that owns it: its transport answers this
//! VM's MMIO exits in the device's window, its queue kicks are ioeventfds here, and
//! its used-buffer notifications ring this compartment's doorbell.

use std::sync::{Arc, Mutex};

use devices::virtio::mmio::{MmioTransport, QUEUE_NOTIFY_OFFSET};
use devices::virtio::VirtioDevice;
use kvm_ioctls::IoEventAddress;

use super::Compartment;
use crate::error::{Result, VmmError};
use crate::mmio::{device_memory, DeviceHandle, Window};

/// How a device's queue kicks reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kicks {
    /// An ioeventfd per queue: KVM signals the device thread without an exit.
    InKernel,
    /// No ioeventfd: the write exits to the monitor, which hands it to the device in
    /// the vCPU thread (a device run in its owner's vCPU thread).
    Exit,
}

impl Compartment {
    /// Puts `device` behind `window` in this compartment and returns the handle the
    /// monitor stops it with. The device sees only the memory [`device_memory`] allows.
    pub fn attach<D: VirtioDevice + 'static>(
        &mut self,
        window: &Window,
        device: D,
        what: &'static str,
        kicks: Kicks,
    ) -> Result<DeviceHandle> {
        debug_assert_eq!(window.owner, self.spec.id);
        let mem = device_memory(&self.mem, &self.layout.data, &self.layout.shared_maps)?;
        let mut transport =
            MmioTransport::new(device, mem).map_err(|source| VmmError::Device { what, source })?;
        // No interrupts here: new used buffers ring the owner's doorbell, which wakes a
        // driver that sleeps with the sleep hypercall (and only when it asked to be
        // woken, see devices::virtio::Interrupt).
        let doorbell = self
            .doorbell
            .try_clone()
            .map_err(|source| VmmError::Doorbell {
                what: "clone",
                source,
            })?;
        transport.set_interrupt(doorbell);
        // A kick is a 4-byte write of the queue index to QueueNotify; KVM matches it
        // and signals the queue's eventfd without leaving the kernel.
        let notify = IoEventAddress::Mmio(window.range.start + QUEUE_NOTIFY_OFFSET);
        let in_kernel = if kicks == Kicks::InKernel {
            transport.num_queues()
        } else {
            0
        };
        for index in 0..in_kernel {
            let (Some(kick), Ok(datamatch)) = (transport.queue_event(index), u32::try_from(index))
            else {
                continue;
            };
            self.vm
                .register_ioevent(kick, &notify, datamatch)
                .map_err(VmmError::kvm("KVM_IOEVENTFD"))?;
        }
        let handle: DeviceHandle = Arc::new(Mutex::new(transport));
        self.mmio.add(window.range.clone(), handle.clone());
        Ok(handle)
    }
}
