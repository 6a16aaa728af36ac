//! The `nic` server: the driver serving a `net` component in another compartment
//! (the 3-way split). Receive buffers live in the heap of the channel with the net
//! component's compartment, so the device writes straight into memory net reads; net
//! copies each frame out before parsing it (this compartment could change it under
//! its feet). Frames to send cross in a shared buffer and are copied into a private
//! transmit buffer.
//!
//! Wake-ups: the device rings this compartment's doorbell, not net's. So net, before
//! it sleeps, stores 1 in the `waiting` word of a control block it shares with us and
//! rings our doorbell; our [`Poller`] then arms the device and, as soon as a frame is
//! there, clears the word and wakes net. (Dekker again: net stores `waiting` and then
//! checks our sleeping flag; we set our sleeping flag and then check `waiting`.)

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;

use flexos_kernel::components::compartment_of;
use flexos_kernel::gate::{self, Poller};
use flexos_kernel::println;
use flexos_kernel::rpc::{SharedBuf, SharedBytes};
use flexos_kernel::sync::SpinLock;

use crate::driver::{NetDevice, RxMemory, TX_MTU};
use crate::{codes::*, nic};

/// Receive buffers in the shared heap (16 x 64 KiB fit the smallest channel arena of a
/// 3-compartment run with the default 16 MiB region).
const SHARED_RX_BUFFERS: u16 = 16;
/// Offset of the `waiting` word in the control block.
pub const CTRL_WAITING: usize = 0;
/// Bytes of the control block.
pub const CTRL_LEN: usize = 64;
/// Longest sleep while net does not wait for us.
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

struct Running {
    nic: NetDevice,
    rx: Vec<SharedBuf>,
    /// Receive buffers handed to net and not yet given back.
    lent: Vec<bool>,
    ctrl: Option<SharedBytes<'static>>,
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
                        ctrl: None,
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

impl nic::Api for Netdev {
    fn attach(&self, ctrl: SharedBuf) -> i64 {
        self.with(|r| {
            match gate::bytes(ctrl) {
                Ok(b) if b.len() >= CTRL_LEN => r.ctrl = Some(b),
                _ => return E_BAD_BUFFER,
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

    fn rx_next(&self, release: i64) -> i64 {
        self.with(|r| {
            if let Ok(id) = u16::try_from(release)
                && let Some(lent) = r.lent.get_mut(usize::from(id))
                && *lent
            {
                *lent = false;
                r.nic.rx_release(id);
            }
            match r.nic.rx_pop() {
                Some((id, len)) => {
                    r.lent[usize::from(id)] = true;
                    (i64::from(id) << 32) | len as i64
                }
                None => E_AGAIN,
            }
        })
    }

    fn tx(&self, frame: SharedBuf) -> i64 {
        self.with(|r| {
            let Ok(bytes) = gate::bytes(frame) else {
                return E_BAD_BUFFER;
            };
            if bytes.is_empty() || bytes.len() > TX_MTU {
                return E_BAD_BUFFER;
            }
            let Some(id) = r.nic.tx_alloc() else {
                return E_AGAIN;
            };
            let len = bytes.len();
            if bytes.copy_out(0, &mut r.nic.tx_frame(id)[..len]).is_err() {
                return E_BAD_BUFFER;
            }
            r.nic.tx_send(id, len);
            0
        })
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
    fn net_waits(&self) -> bool {
        self.ctrl
            .is_some_and(|c| c.load_u64(CTRL_WAITING).is_some_and(|w| w != 0))
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
        if r.net_waits() && r.nic.rx_pending() {
            if let Some(c) = r.ctrl {
                c.store_u64(CTRL_WAITING, 0);
            }
            gate::endpoint().wake(r.client);
            return true;
        }
        false
    }

    fn before_sleep(&self) -> Option<u64> {
        let mut guard = self.state.try_lock()?;
        let State::Running(r) = &mut guard.0 else {
            return Some(IDLE_SLEEP_US);
        };
        if !r.net_waits() {
            // Net is polling us: its calls wake us.
            return Some(IDLE_SLEEP_US);
        }
        r.armed = true;
        if r.nic.arm() {
            None
        } else {
            Some(IDLE_SLEEP_US)
        }
    }
}
