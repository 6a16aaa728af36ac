//! How an image tells every compartment which gate servers its components provide.
//!
//! The same image boots in every compartment, and only the boot info says which
//! components a compartment hosts, so registration cannot be a call in `main` (server
//! compartments never run `main`). Instead [`servers!`](crate::servers) puts one
//! [`ServerEntry`] per (component, interface) into the ELF section `.flexos.servers`,
//! which the kernel's linker script gathers between two symbols. At boot, before `main`
//! or serving, every compartment walks that table and registers the servers of the
//! components placed in it. Kernel components can register the same way, without the
//! app listing them.
//!
//! An interface id names one server in the whole image: two components that speak the
//! same protocol (gatebench's two relays) declare it under two ids. Otherwise a remote
//! call could not say which of two co-located components it means. The kernel checks
//! this at boot.

use rpc_shm::{Dispatch, MAX_INTERFACES};

/// One server of the table: component `component` serves interface `iface` with
/// `server`. Built by [`servers!`](crate::servers).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ServerEntry {
    pub component: u16,
    pub iface: u16,
    pub server: &'static (dyn Dispatch + Sync),
}

impl ServerEntry {
    #[doc(hidden)]
    pub const fn new(component: u16, iface: u16, server: &'static (dyn Dispatch + Sync)) -> Self {
        ServerEntry {
            component,
            iface,
            server,
        }
    }
}

// Only their addresses are used; the type is a placeholder.
unsafe extern "C" {
    /// First entry of `.flexos.servers` (defined by `kernel/link.ld`).
    static __flexos_servers_start: u8;
    /// One past the last entry of `.flexos.servers` (defined by `kernel/link.ld`).
    static __flexos_servers_end: u8;
}

/// Every server the image declared, in link order.
///
/// # Panics
///
/// If the section is not a whole array of entries (a linker script that does not
/// gather it as `kernel/link.ld` does).
pub fn table() -> &'static [ServerEntry] {
    let start = (&raw const __flexos_servers_start).cast::<ServerEntry>();
    let end = (&raw const __flexos_servers_end).cast::<ServerEntry>();
    let bytes = (end as usize).wrapping_sub(start as usize);
    let size = core::mem::size_of::<ServerEntry>();
    assert!(
        start.is_aligned() && start <= end && bytes.is_multiple_of(size),
        "the .flexos.servers section is not an array of ServerEntry ({start:p}..{end:p}); \
         link the image with kernel/link.ld"
    );
    // SAFETY: the linker script puts exactly the `.flexos.servers` input sections
    // between the two symbols; each is one `ServerEntry` static emitted by `servers!`
    // (a 24-byte, 8-aligned repr(C) value, so the linker inserts no padding), which is
    // initialised at link time and never written (the section is in the read-only
    // segment).
    unsafe { core::slice::from_raw_parts(start, bytes / size) }
}

/// Checks the table against the placement: every component exists, every interface
/// id fits an endpoint's table and names one server. Returns a description of the
/// first problem.
pub(crate) fn check(table: &[ServerEntry], component_count: u32) -> Result<(), CheckError> {
    for (i, e) in table.iter().enumerate() {
        if u32::from(e.component) >= component_count {
            return Err(CheckError::UnknownComponent(e.component));
        }
        if e.iface as usize >= MAX_INTERFACES {
            return Err(CheckError::IfaceTooLarge(e.iface));
        }
        if table[..i].iter().any(|o| o.iface == e.iface) {
            return Err(CheckError::DuplicateIface(e.iface));
        }
    }
    Ok(())
}

/// A mistake in the image's server table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckError {
    UnknownComponent(u16),
    IfaceTooLarge(u16),
    DuplicateIface(u16),
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            CheckError::UnknownComponent(c) => write!(
                f,
                "a server is declared for component {c}, which the boot info does not list"
            ),
            CheckError::IfaceTooLarge(i) => write!(
                f,
                "interface id {i} is too large (ids are 0..{MAX_INTERFACES})"
            ),
            CheckError::DuplicateIface(i) => write!(
                f,
                "interface id {i} is served twice; give each server its own interface id"
            ),
        }
    }
}

/// Declares the gate servers of the image's components.
///
/// ```ignore
/// static CALLEE_SERVER: callee::Server<Callee> = callee::Server(Callee);
///
/// flexos_kernel::servers! {
///     CALLEE => callee(CALLEE_SERVER),
///     RELAY1 => relay1(RELAY1_SERVER),
/// }
/// ```
///
/// Each line says: component `CALLEE` (a `components!` id) serves the interface declared
/// by `rpc::interface!` as module `callee`, with the static `CALLEE_SERVER`, which must
/// be a `callee::Server<_>` (checked at compile time, so a server cannot be filed under
/// another interface's id). Every compartment that hosts `CALLEE` registers it at boot.
///
/// Use the same static as the client's local instance
/// (`callee::Client::new(router, CALLEE, &CALLEE_SERVER.0)`), so that co-located
/// and remote callers reach the same object.
#[macro_export]
macro_rules! servers {
    ($($component:path => $($iface:ident)::+ ($server:path)),+ $(,)?) => {
        $(
            const _: () = {
                const fn server_of<T: $($iface)::+::Api + ::core::marker::Sync>(
                    server: &'static $($iface)::+::Server<T>,
                ) -> &'static (dyn $crate::rpc::Dispatch + ::core::marker::Sync) {
                    server
                }
                #[used]
                #[unsafe(link_section = ".flexos.servers")]
                static ENTRY: $crate::gate::ServerEntry = $crate::gate::ServerEntry::new(
                    $component,
                    $($iface)::+::ID,
                    server_of(&$server),
                );
            };
        )+
    };
}
