//! The `nic` server: the driver serving a `net` component in another compartment
//! (the 3-way split). Receive buffers live in the heap of the channel with the net
//! component's compartment, so the device writes straight into memory net reads; net
//! copies each frame out before parsing it (this compartment could change it under
//! its feet). Frames to send are written by net into slots of a shared transmit area
//! and copied into a private transmit buffer here.
//!
//! After `attach`, no gate call is on the data path: ids cross in the four rings of a
//! control block (see [`relay`](crate::relay)), which this compartment's [`Poller`]
//! serves between calls: received frames out, buffers given back in, frames to send
//! in, sent slots out.
//!
//! Wake-ups: the device rings this compartment's doorbell, not net's. Net, before it
//! sleeps, stores 1 in the `waiting` word and re-checks the received ring; we store
//! into that ring and then check `waiting`, and wake net (Dekker: each side stores,
//! fences, then loads the other's word). Net wakes us (if we sleep) after pushing
//! into the released or send rings; we re-check them after setting our sleeping flag.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};

use flexos_kernel::components::compartment_of;
use flexos_kernel::gate::{self, Poller};
use flexos_kernel::println;
use flexos_kernel::rpc::{SharedBuf, SharedBytes};
use flexos_kernel::sync::SpinLock;

use crate::driver::{NetDevice, RxMemory, TX_MTU};
use crate::relay::*;
use crate::{codes::*, nic};

/// Receive buffers in the shared heap (16 x 64 KiB fit the smallest channel arena of a
/// 3-compartment run with the default 16 MiB region).
const SHARED_RX_BUFFERS: u16 = 16;
/// Longest sleep (us): the device or net ring the doorbell when there is work.
const IDLE_SLEEP_US: u64 = 10_000;

/// Receive buffers allocated for the net component's compartment.
struct SharedRx {
    client: u16,
    bufs: Vec<SharedBuf>,
}

impl RxMemory for SharedRx {
    fn alloc(&mut self, len: usize) -> Option<NonNull<u8>> {
        let buf = gate::shared_alloc(self.client, len)?;
        let ptr = gate::bytes(buf).ok()?.as_ptr();
        self.bufs.push(buf);
        NonNull::new(ptr)
    }
}

/// The rings of an attached net component.
struct Attached {
    ctrl: SharedBytes<'static>,
    received: Producer<'static>,
    released: Consumer<'static>,
    send: Consumer<'static>,
    sent: Producer<'static>,
    tx_area: SharedBytes<'static>,
}

struct Running {
    nic: NetDevice,
    rx: Vec<SharedBuf>,
    /// Receive buffers handed to net and not yet given back.
    lent: Vec<bool>,
    net: Option<Attached>,
    client: u32,
    armed: bool,
}

enum State {
    Unstarted,
    Absent,
    Running(Box<Running>),
}

struct StateCell(State);

// SAFETY: a compartment runs on one vCPU; the state (pointers into its own heap, MMIO
// window and shared region, valid for the run) is only reached under the lock.
unsafe impl Send for StateCell {}

/// The `netdev` component's server. `client` is the net component.
pub struct Netdev {
    client: u16,
    state: SpinLock<StateCell>,
}

impl Netdev {
    pub const fn new(client: u16) -> Netdev {
        Netdev {
            client,
            state: SpinLock::new(StateCell(State::Unstarted)),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Running) -> i64) -> i64 {
        let Some(mut guard) = self.state.try_lock() else {
            return E_BUSY;
        };
        if let State::Unstarted = guard.0 {
            let mut memory = SharedRx {
                client: self.client,
                bufs: Vec::new(),
            };
            guard.0 = match NetDevice::start(&mut memory, SHARED_RX_BUFFERS) {
                Ok(nic) => {
                    let n = nic.rx_count();
                    State::Running(Box::new(Running {
                        nic,
                        rx: memory.bufs,
                        lent: alloc::vec![false; n],
                        net: None,
                        client: compartment_of(self.client),
                        armed: false,
                    }))
                }
                Err(e) => {
                    println!("netdev: {e}");
                    State::Absent
                }
            };
        }
        match &mut guard.0 {
            State::Running(r) => f(r),
            _ => E_NO_DEVICE,
        }
    }
}

fn attach(ctrl: SharedBuf, tx_area: SharedBuf) -> Option<Attached> {
    let ctrl = gate::bytes(ctrl).ok().filter(|b| b.len() >= CTRL_LEN)?;
    let tx_area = gate::bytes(tx_area)
        .ok()
        .filter(|b| b.len() >= TX_SLOTS * TX_SLOT)?;
    Some(Attached {
        ctrl,
        received: Producer::new(ctrl, CTRL_RECEIVED, RELAY_ENTRIES).ok()?,
        released: Consumer::new(ctrl, CTRL_RELEASED, RELAY_ENTRIES).ok()?,
        send: Consumer::new(ctrl, CTRL_SEND, RELAY_ENTRIES).ok()?,
        sent: Producer::new(ctrl, CTRL_SENT, RELAY_ENTRIES).ok()?,
        tx_area,
    })
}

impl nic::Api for Netdev {
    fn attach(&self, ctrl: SharedBuf, tx_area: SharedBuf) -> i64 {
        self.with(|r| {
            if r.net.is_some() {
                return E_BUSY;
            }
            match attach(ctrl, tx_area) {
                Some(a) => r.net = Some(a),
                None => return E_BAD_BUFFER,
            }
            r.rx.len() as i64
        })
    }

    fn mac(&self) -> u64 {
        let mut mac = 0;
        self.with(|r| {
            mac = r
                .nic
                .mac()
                .iter()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            0
        });
        mac
    }

    fn rx_buffer(&self, id: u16) -> SharedBuf {
        let mut out = SharedBuf::from_parts(0, 0);
        self.with(|r| {
            if let Some(&b) = r.rx.get(usize::from(id)) {
                out = b;
            }
            0
        });
        out
    }

    fn stat(&self, which: u16) -> i64 {
        self.with(|r| match which {
            0 => r.nic.rx_frames as i64,
            1 => r.nic.rx_bytes as i64,
            2 => r.nic.tx_frames as i64,
            3 => r.nic.kicks as i64,
            _ => E_BAD_ID,
        })
    }
}

impl Running {
    /// One round of relaying; whether anything moved. A ring the peer garbled stops
    /// the relay (net then sees no more frames; the run goes on).
    fn relay(&mut self) -> bool {
        let Some(a) = self.net.as_mut() else {
            return false;
        };
        let mut progress = false;
        let ok = (|| -> Result<(), RelayError> {
            while let Some(id) = a.released.pop()? {
                progress = true;
                if let Ok(id) = u16::try_from(id)
                    && let Some(lent) = self.lent.get_mut(usize::from(id))
                    && *lent
                {
                    *lent = false;
                    self.nic.rx_release(id);
                }
            }
            // Only while the device has a transmit buffer: a frame left in the ring
            // waits for one (this compartment does not sleep while it is there),
            // where dropping it cost a TCP retransmission (`iperf3 -R` in 3
            // compartments ran at 0.005 Gbit/s).
            while self.nic.tx_ready()
                && let Some(entry) = a.send.pop()?
            {
                progress = true;
                let (slot, len) = ((entry >> 32) as usize, (entry & 0xffff_ffff) as usize);
                if slot < TX_SLOTS && len > 0 && len <= TX_MTU {
                    if let Some(id) = self.nic.tx_alloc() {
                        let frame = &mut self.nic.tx_frame(id)[..len];
                        if a.tx_area.copy_out(slot * TX_SLOT, frame).is_ok() {
                            self.nic.tx_send(id, len);
                        }
                    }
                    // Sent, the slot is free again. The ring has room: net has at
                    // most TX_SLOTS slots out.
                    a.sent.push(slot as u64)?;
                }
            }
            let mut pushed = false;
            while a.received.len()? < RELAY_ENTRIES {
                let Some((id, len)) = self.nic.rx_pop() else {
                    break;
                };
                self.lent[usize::from(id)] = true;
                a.received.push(u64::from(id) << 32 | len as u64)?;
                pushed = true;
            }
            if pushed {
                progress = true;
                fence(Ordering::SeqCst);
                if a.ctrl.load_u64(CTRL_WAITING).is_some_and(|w| w != 0) {
                    a.ctrl.store_u64(CTRL_WAITING, 0);
                    gate::endpoint().wake(self.client);
                }
            }
            Ok(())
        })();
        if ok.is_err() {
            println!("netdev: the net component garbled the relay rings; relaying stops");
            self.net = None;
        }
        progress
    }

    /// Work pending for the relay (net pushed something)?
    fn relay_pending(&self) -> bool {
        // A garbled ring counts as pending: the next relay round finds it and stops.
        self.net
            .as_ref()
            .is_some_and(|a| a.released.pending() || a.send.pending())
    }
}

impl Poller for Netdev {
    fn poll(&self) -> bool {
        let Some(mut guard) = self.state.try_lock() else {
            return false;
        };
        let State::Running(r) = &mut guard.0 else {
            return false;
        };
        if r.armed {
            r.nic.disarm();
            r.armed = false;
        }
        r.relay()
    }

    fn before_sleep(&self) -> Option<u64> {
        let mut guard = self.state.try_lock()?;
        let State::Running(r) = &mut guard.0 else {
            return Some(IDLE_SLEEP_US);
        };
        if r.net.is_none() {
            return Some(IDLE_SLEEP_US);
        }
        r.armed = true;
        if r.nic.arm() || r.relay_pending() {
            None
        } else {
            Some(IDLE_SLEEP_US)
        }
    }
}
