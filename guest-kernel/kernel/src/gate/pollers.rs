//! Background work of components: what a compartment does between gate calls.
//!
//! A component that must poll something (a device, a network stack) declares a
//! [`Poller`] with [`pollers!`](crate::pollers); like the servers, the entries go into
//! an ELF section (`.flexos.pollers`) so that every compartment knows at boot which
//! pollers its components bring, without running any code of the app. A compartment
//! hosting pollers serves calls with rpc-shm's `Endpoint::serve_with` instead of
//! `serve_until`, and [`wait_until`](super::wait_until) runs them too, so an app that
//! shares the compartment with such a component pumps it while it waits.

use rpc_shm::Background;

/// Work a component does between gate calls (`&self`: pollers are statics; keep the
/// state behind a lock, never held across a gate call).
pub trait Poller {
    /// One round of work; whether it made progress.
    fn poll(&self) -> bool;
    /// Before the compartment sleeps: arm the wake-up sources (they must ring this
    /// compartment's doorbell) and re-check. `None`: work is pending; `Some(us)`: the
    /// longest sleep.
    fn before_sleep(&self) -> Option<u64>;
    /// Idle rounds before the compartment sleeps, given the idle policy's (see
    /// `rpc_shm::Background::spin_rounds`); the compartment uses the smallest.
    fn spin_rounds(&self, policy: u32) -> u32 {
        policy
    }
}

/// One entry of the table: component `component` runs `poller`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PollerEntry {
    pub component: u16,
    pub poller: &'static (dyn Poller + Sync),
}

impl PollerEntry {
    #[doc(hidden)]
    pub const fn new(component: u16, poller: &'static (dyn Poller + Sync)) -> Self {
        PollerEntry { component, poller }
    }
}

// Only their addresses are used; the type is a placeholder.
unsafe extern "C" {
    /// First entry of `.flexos.pollers` (defined by `kernel/link.ld`).
    static __flexos_pollers_start: u8;
    /// One past the last entry of `.flexos.pollers` (defined by `kernel/link.ld`).
    static __flexos_pollers_end: u8;
}

/// Every poller the image declared.
///
/// # Panics
///
/// If the section is not a whole array of entries (see `servers::table`).
pub fn table() -> &'static [PollerEntry] {
    let start = (&raw const __flexos_pollers_start).cast::<PollerEntry>();
    let end = (&raw const __flexos_pollers_end).cast::<PollerEntry>();
    let bytes = (end as usize).wrapping_sub(start as usize);
    let size = core::mem::size_of::<PollerEntry>();
    assert!(
        start.is_aligned() && start <= end && bytes.is_multiple_of(size),
        "the .flexos.pollers section is not an array of PollerEntry ({start:p}..{end:p}); \
         link the image with kernel/link.ld"
    );
    // SAFETY: the linker script puts exactly the `.flexos.pollers` input sections
    // between the two symbols; each is one `PollerEntry` static emitted by `pollers!`
    // (a 24-byte, 8-aligned repr(C) value, so no padding between them), initialised
    // at link time and never written (read-only segment).
    unsafe { core::slice::from_raw_parts(start, bytes / size) }
}

/// The pollers of the components placed in this compartment, as one [`Background`].
pub(crate) struct Local;

impl Local {
    fn each(mut f: impl FnMut(&'static (dyn Poller + Sync))) {
        let boot = crate::boot_info();
        for e in table() {
            let here = boot
                .placement
                .get(usize::from(e.component))
                .is_some_and(|&c| u32::from(c) == boot.compartment_id);
            if here && u32::from(e.component) < boot.component_count {
                f(e.poller);
            }
        }
    }

    /// Does this compartment host any poller?
    pub(crate) fn any() -> bool {
        let mut any = false;
        Self::each(|_| any = true);
        any
    }
}

impl Background for Local {
    fn poll(&mut self) -> bool {
        let mut progress = false;
        Self::each(|p| progress |= p.poll());
        progress
    }

    fn spin_rounds(&self, policy: u32) -> u32 {
        let mut rounds = policy;
        Self::each(|p| rounds = rounds.min(p.spin_rounds(policy)));
        rounds
    }

    fn before_sleep(&mut self) -> Option<u64> {
        let mut sleep = Some(u64::MAX);
        Self::each(|p| {
            sleep = match (sleep, p.before_sleep()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            }
        });
        sleep
    }
}

/// Declares the background pollers of the image's components:
///
/// ```ignore
/// flexos_kernel::pollers! { NET => NET_SERVER.0 }
/// ```
///
/// Component `NET` (a `components!` id) runs the static `NET_SERVER.0`, which must
/// implement [`Poller`] + `Sync`, in whichever compartment hosts it.
#[macro_export]
macro_rules! pollers {
    ($($component:path => $poller:expr),+ $(,)?) => {
        $(
            const _: () = {
                #[used]
                #[unsafe(link_section = ".flexos.pollers")]
                static ENTRY: $crate::gate::PollerEntry =
                    $crate::gate::PollerEntry::new($component, &$poller);
            };
        )+
    };
}
