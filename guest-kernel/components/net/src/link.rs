//! smoltcp's [`Device`] over the netdev driver in this compartment: received frames
//! are handed to the stack in place (the receive buffer is the device's, in private
//! memory, and ours until released), transmitted ones are built in the driver's
//! transmit buffers. No copy in the driver on either side.

use core::cell::RefCell;

use flexos_netdev::NetDevice;
use flexos_netdev::driver::TX_MTU;
use flexos_netdev::frame::{HDR_LEN, accept};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The device as smoltcp sees it.
pub struct Link {
    nic: RefCell<NetDevice>,
}

impl Link {
    pub fn new(nic: NetDevice) -> Link {
        Link {
            nic: RefCell::new(nic),
        }
    }

    pub fn nic(&self) -> core::cell::RefMut<'_, NetDevice> {
        self.nic.borrow_mut()
    }
}

pub struct Rx<'a> {
    nic: &'a RefCell<NetDevice>,
    id: u16,
    ptr: *const u8,
    len: usize,
}

pub struct Tx<'a> {
    nic: &'a RefCell<NetDevice>,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // SAFETY: `ptr .. ptr + len` is a receive buffer the device finished writing
        // (it came out of the used ring, acquire) and does not touch until we post it
        // again below; it is private memory nothing else aliases.
        let frame = unsafe { core::slice::from_raw_parts(self.ptr, self.len) };
        let r = f(frame);
        self.nic.borrow_mut().rx_release(self.id);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut nic = self.nic.borrow_mut();
        match nic.tx_alloc() {
            Some(id) if len <= TX_MTU => {
                let r = f(&mut nic.tx_frame(id)[..len]);
                nic.tx_send(id, len);
                r
            }
            // No transmit buffer (the device is behind) or an oversized frame: drop
            // it, as a full NIC queue would; TCP retransmits.
            _ => {
                let mut scratch = alloc::vec![0u8; len];
                f(&mut scratch)
            }
        }
    }
}

impl phy::Device for Link {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let mut nic = self.nic.borrow_mut();
        loop {
            let (id, len) = nic.rx_pop()?;
            let buf = nic.rx_buffer(id)?;
            // SAFETY: as in `Rx::consume`: a buffer the device has finished with.
            let whole = unsafe { core::slice::from_raw_parts(buf.as_ptr(), len) };
            if len > HDR_LEN && accept(whole) {
                drop(nic);
                return Some((
                    Rx {
                        nic: &self.nic,
                        id,
                        // SAFETY: len > HDR_LEN, inside the buffer.
                        ptr: unsafe { buf.as_ptr().add(HDR_LEN) },
                        len: len - HDR_LEN,
                    },
                    Tx { nic: &self.nic },
                ));
            }
            nic.rx_release(id);
        }
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx { nic: &self.nic })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = TX_MTU;
        // The driver checks the frames the device does not vouch for (frame::accept);
        // the others carry partial TCP checksums the stack must not verify. Sent
        // frames get full checksums (no offload towards the device).
        let mut sums = ChecksumCapabilities::ignored();
        sums.ipv4 = Checksum::Tx;
        sums.tcp = Checksum::Tx;
        sums.udp = Checksum::Tx;
        sums.icmpv4 = Checksum::Both;
        caps.checksum = sums;
        caps
    }
}
