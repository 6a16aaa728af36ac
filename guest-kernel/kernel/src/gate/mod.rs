//! The gate layer: how a component calls a component in another compartment.
//!
//! docs/design.md, gates. Each compartment owns one rpc-shm [`Endpoint`] over the shared
//! region the monitor maps at the same address everywhere; a [`Router`] built from the
//! boot-info placement tells generated clients whether a component is co-located
//! (direct call: one predictable branch, no ring, no copy) or remote (a call through
//! the ring to its compartment). This module sets both up at boot, registers the
//! servers of the components placed here (see [`servers!`](crate::servers)), and gives
//! app code:
//!
//! - [`router()`]: what `iface::Client::new(router(), COMPONENT, &LOCAL)` takes;
//! - [`endpoint()`] / [`region()`]: the raw endpoint and shared region;
//! - [`shared_alloc`] / [`shared_free`] / [`bytes`]: shared-heap buffers for data that
//!   crosses to one component as a [`SharedBuf`]. A buffer is allocated *for* its
//!   destination, from this compartment's arena in the channel with the destination's
//!   compartment (its own channel when the destination is co-located): the monitor maps
//!   a channel into its two compartments only, and a callee refuses a handle from any
//!   other channel, so data in flight between two compartments is out of every third
//!   one's reach.
//!
//! # Boot flow (called from `_start` in every compartment)
//!
//! 1. [`init`]: validate the region header the monitor wrote (`Region::from_raw`; a bad
//!    header ends the run with a message and exit 63), create the endpoint, the router
//!    and the arena, register the local servers, mark the compartment ready;
//! 2. the compartment hosting the entry component (component 0) runs `main` and exits
//!    with its code; every other compartment calls [`serve_forever`].
//!
//! A call posted before its callee has booted simply waits in the ring: the callee
//! registers its servers before it first polls, so no call sees a half-set-up server.
//!
//! # Where the state lives
//!
//! The endpoint keeps its ring indices in `Cell`s (it is not `Sync`), so it lives in a
//! [`BootCell`]: set once here, shared afterwards, sound because a compartment has one
//! thread of execution (see [`BootCell`]'s docs). No `static mut` is involved.

mod platform;
mod pollers;
mod servers;

pub use platform::Hypercalls;
pub use pollers::{Poller, PollerEntry, table as poller_table};
pub use servers::{ServerEntry, table as server_table};

use alloc::boxed::Box;

use flexos_abi::{BootInfo, MAX_COMPONENTS, SHARED_MAX};
use rpc_shm::{
    Arena, Endpoint, GateError, IdlePolicy, MAX_COMPARTMENTS, Placement, Region, SharedBuf,
    SharedBytes,
};

use crate::rt::{EXIT_BAD_BOOT, exit};
use crate::sync::{BootCell, SpinLock};
use crate::{Args, println};

/// This compartment's endpoint type.
pub type GateEndpoint = Endpoint<'static, Hypercalls>;
/// The router generated clients take: placement from boot info over the endpoint.
pub type GateRouter = Placement<'static, 'static, Hypercalls>;

static ENDPOINT: BootCell<GateEndpoint> = BootCell::new();
static ROUTER: BootCell<GateRouter> = BootCell::new();
/// This compartment's arenas, one per channel (index = peer compartment, or this one
/// for its own channel), created on first use (each keeps ~16 KiB of bookkeeping, in
/// private memory). The lock is never contended (one thread) and never held across a
/// gate call.
static ARENAS: SpinLock<[Option<Box<Arena>>; MAX_COMPARTMENTS]> =
    SpinLock::new([const { None }; MAX_COMPARTMENTS]);

/// Ends the run: the boot info or the shared region is unusable.
fn bad_boot(args: core::fmt::Arguments<'_>) -> ! {
    println!("flexos: {args}; run the image with a flexos-vmm built from the same tree");
    exit(EXIT_BAD_BOOT)
}

/// Sets up the gate layer of this compartment (see the module docs). Ends the run with
/// [`EXIT_BAD_BOOT`] if the boot info's placement or the shared region header is
/// unusable; panics if the image's server table is inconsistent (an image bug).
pub(crate) fn init(info: &'static BootInfo) {
    let (me, count) = (info.compartment_id, info.compartment_count);
    if count == 0 || count as usize > MAX_COMPARTMENTS || me >= count {
        bad_boot(format_args!(
            "boot info says compartment {me} of {count} (want 1..={MAX_COMPARTMENTS} compartments)"
        ));
    }
    let components = info.component_count as usize;
    if components == 0 || components > MAX_COMPONENTS {
        bad_boot(format_args!(
            "boot info lists {components} components (want 1..={MAX_COMPONENTS})"
        ));
    }
    let placement: &'static [u8] = &info.placement[..components];
    if let Some(c) = placement.iter().position(|&c| u32::from(c) >= count) {
        bad_boot(format_args!(
            "boot info places component {c} in compartment {} of {count}",
            placement[c]
        ));
    }

    let (base, size) = (info.shared_base, info.shared_size);
    if size == 0 || size > SHARED_MAX || base.checked_add(size).is_none() {
        bad_boot(format_args!(
            "boot info describes no usable shared region ({base:#x}+{size:#x})"
        ));
    }
    // SAFETY: the monitor maps `base .. base + size` read-write into every compartment
    // for the whole run (boot info contract), and in this compartment it is only ever
    // accessed through rpc-shm's atomics (Region, SharedBytes) or, in deliberately
    // malicious test code, other atomics.
    let region = match unsafe { Region::from_raw(base as usize as *mut u8, size as usize) } {
        Ok(region) => region,
        Err(e) => bad_boot(format_args!(
            "invalid shared-region header at {base:#x} ({size:#x} bytes): {e}"
        )),
    };
    if region.compartments() != count {
        bad_boot(format_args!(
            "the shared-region header is laid out for {} compartments, the boot info says {count}",
            region.compartments()
        ));
    }

    let table = server_table();
    if let Err(e) = servers::check(table, info.component_count) {
        panic!("the image's gate server table is inconsistent: {e}");
    }

    let endpoint = match Endpoint::new(region, me, Hypercalls) {
        Ok(endpoint) => endpoint,
        Err(e) => bad_boot(format_args!("cannot open the gate endpoint: {e}")),
    };
    let Ok(endpoint) = ENDPOINT.set(endpoint) else {
        panic!("gate::init called twice");
    };
    for entry in table {
        if u32::from(placement[entry.component as usize]) == me {
            // Cannot fail: `check` bounded every interface id.
            if let Err(e) = endpoint.register(entry.iface, entry.server) {
                panic!("cannot register interface {}: {e}", entry.iface);
            }
        }
    }
    if ROUTER.set(Placement::new(endpoint, placement)).is_err() {
        panic!("gate::init called twice");
    }
    endpoint.set_idle_policy(idle_policy(info));
    endpoint.mark_ready();
}

/// How long an idle compartment spins before it sleeps: what the monitor's thread
/// policy chose for this run (its threads against its CPUs, in the boot info), else
/// rpc-shm's `IdlePolicy::for_host` from the CPU count, or `gate.spin=N` rounds from
/// the guest arguments (for experiments; the monitor's `--tune spin=N` does the same
/// for every compartment).
fn idle_policy(info: &BootInfo) -> IdlePolicy {
    let mut policy = IdlePolicy::for_host(info.compartment_count, info.host_cpus);
    if info.spin_rounds != flexos_abi::SPIN_ROUNDS_UNSET {
        policy.spin_rounds = info.spin_rounds;
    }
    if let Some(text) = Args::from_boot(info).get("gate.spin") {
        match text.parse() {
            Ok(rounds) => policy.spin_rounds = rounds,
            Err(_) => {
                println!(
                    "flexos: bad guest argument gate.spin={text}: want a number of spin rounds"
                );
                exit(EXIT_BAD_BOOT)
            }
        }
    }
    policy
}

/// Serves gate calls for the components of this compartment, forever, running their
/// pollers ([`pollers!`](crate::pollers)) in between. What every compartment that does
/// not host the entry component does after boot.
pub fn serve_forever() -> ! {
    if pollers::Local::any() {
        endpoint().serve_with(|| false, &mut pollers::Local);
    } else {
        endpoint().serve_until(|| false);
    }
    unreachable!("serving with a stop condition that never holds returned")
}

/// Waits until `ready()` holds, serving incoming gate calls and running this
/// compartment's pollers meanwhile; spins briefly, then sleeps until a peer that
/// changes what `ready` reads calls `endpoint().wake(me)` (or a poller's wake-up
/// source, e.g. a device, rings). `ready` must only read shared memory: no gate calls.
pub fn wait_until(ready: impl Fn() -> bool) {
    if pollers::Local::any() {
        endpoint().serve_with(ready, &mut pollers::Local);
    } else {
        endpoint().wait_until(ready);
    }
}

/// Serves at most one incoming gate call and runs this compartment's pollers once.
pub fn poll_once() {
    endpoint().poll();
    rpc_shm::Background::poll(&mut pollers::Local);
}

/// This compartment's endpoint.
///
/// # Panics
///
/// Before boot set it up (impossible from app code, which runs after boot).
#[inline(always)]
pub fn endpoint() -> &'static GateEndpoint {
    match ENDPOINT.get() {
        Some(endpoint) => endpoint,
        None => not_ready(),
    }
}

/// The router for generated clients: `iface::Client::new(gate::router(), COMPONENT,
/// &LOCAL_INSTANCE)`. Build a client once and reuse it on hot paths: construction asks
/// the router where the component lives.
///
/// # Panics
///
/// Before boot set it up (impossible from app code).
#[inline(always)]
pub fn router() -> &'static GateRouter {
    match ROUTER.get() {
        Some(router) => router,
        None => not_ready(),
    }
}

#[cold]
#[inline(never)]
fn not_ready() -> ! {
    panic!("the gate layer is used before boot set it up")
}

/// The shared region (same address in every compartment).
pub fn region() -> &'static Region {
    endpoint().region()
}

/// The bytes of a shared buffer, after checking it lies inside a channel's heap. Read
/// and write them by copying ([`SharedBytes::read`] / [`SharedBytes::write`]): the peer
/// may change them at any time. (A buffer of a channel this compartment is not a party
/// to is not mapped here: touching it ends the run as an isolation violation.)
pub fn bytes(buf: SharedBuf) -> Result<SharedBytes<'static>, GateError> {
    region().bytes(buf)
}

/// Allocates `len` bytes to pass to `component` (a component id from the image's
/// `components!`): from this compartment's arena in the channel with the compartment
/// hosting it. `None` if `len` is 0, the component is unknown, or the arena has no room.
pub fn shared_alloc(component: u16, len: usize) -> Option<SharedBuf> {
    let boot = crate::boot_info();
    if u32::from(component) >= boot.component_count {
        return None;
    }
    shared_alloc_for_compartment(u32::from(boot.placement[usize::from(component)]), len)
}

/// Allocates `len` bytes to pass to a component in compartment `peer` (this
/// compartment's id: data that stays here). `None` if `len` is 0, `peer` does not
/// exist, or the arena has no room.
pub fn shared_alloc_for_compartment(peer: u32, len: usize) -> Option<SharedBuf> {
    let ep = endpoint();
    if peer >= ep.compartments() {
        return None;
    }
    let mut arenas = ARENAS.lock();
    let slot = &mut arenas[peer as usize];
    if slot.is_none() {
        // Cannot fail: both compartments are in range of the validated layout.
        *slot = Some(Box::new(
            Arena::new(ep.region().layout(), ep.me(), peer).ok()?,
        ));
    }
    slot.as_mut()?.alloc(len)
}

/// Free bytes (not necessarily contiguous) of this compartment's arena in the channel
/// with `component`'s compartment: what a component that shares that heap among its
/// clients (the stack's receive rings) divides. 0 if the component is unknown.
pub fn shared_available(component: u16) -> usize {
    let boot = crate::boot_info();
    if u32::from(component) >= boot.component_count {
        return 0;
    }
    let peer = u32::from(boot.placement[usize::from(component)]);
    let ep = endpoint();
    if peer >= ep.compartments() {
        return 0;
    }
    let mut arenas = ARENAS.lock();
    let slot = &mut arenas[peer as usize];
    if slot.is_none() {
        match Arena::new(ep.region().layout(), ep.me(), peer) {
            Ok(a) => *slot = Some(Box::new(a)),
            Err(_) => return 0,
        }
    }
    slot.as_ref()
        .map_or(0, |a| usize::try_from(a.available()).unwrap_or(usize::MAX))
}

/// Frees a buffer [`shared_alloc`] returned; anything else is refused with
/// [`GateError::BadHandle`].
pub fn shared_free(buf: SharedBuf) -> Result<(), GateError> {
    let mut arenas = ARENAS.lock();
    match arenas.iter_mut().flatten().find(|a| a.contains(buf)) {
        Some(arena) => arena.free(buf),
        None => Err(GateError::BadHandle),
    }
}
