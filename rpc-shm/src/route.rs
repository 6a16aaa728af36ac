//! [`Router`]: how a generated client reaches a component — a direct call when the
//! component shares the caller's compartment, a ring call otherwise.

use crate::endpoint::{Endpoint, Platform};
use crate::error::GateError;
use crate::layout::HeapBounds;
use crate::slot::ARGS;

/// Where a component lives, seen from the calling compartment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// In this compartment: call the implementation directly.
    Local,
    /// In that compartment: call through the ring.
    Remote(u32),
}

/// Placement plus transport, as the generated clients use it. The guest kernel
/// implements it over its [`Endpoint`] and the boot-time placement ([`Placement`]
/// does exactly that); tests implement it too.
pub trait Router {
    /// Where `component` lives.
    fn route(&self, component: u16) -> Route;
    /// A remote call (see [`Endpoint::call`]).
    fn call(
        &self,
        compartment: u32,
        iface: u16,
        method: u16,
        args: [u64; ARGS],
    ) -> Result<u64, GateError>;
    /// The heap of the channel with `compartment`, to validate handles in its replies.
    fn heap(&self, compartment: u32) -> HeapBounds;
}

/// A [`Router`] over an endpoint and a placement table: component index ->
/// compartment id (e.g. `BootInfo::placement[..component_count]`). A component
/// missing from the table routes to a nonexistent compartment, so calls to it fail
/// with [`GateError::NoSuchCompartment`].
pub struct Placement<'e, 'a, P: Platform> {
    endpoint: &'e Endpoint<'a, P>,
    table: &'e [u8],
}

impl<'e, 'a, P: Platform> Placement<'e, 'a, P> {
    pub fn new(endpoint: &'e Endpoint<'a, P>, table: &'e [u8]) -> Self {
        Placement { endpoint, table }
    }

    pub fn endpoint(&self) -> &'e Endpoint<'a, P> {
        self.endpoint
    }
}

impl<P: Platform> Router for Placement<'_, '_, P> {
    fn route(&self, component: u16) -> Route {
        match self.table.get(component as usize) {
            Some(&c) if c as u32 == self.endpoint.me() => Route::Local,
            Some(&c) => Route::Remote(c as u32),
            None => Route::Remote(u32::MAX),
        }
    }

    #[inline]
    fn call(
        &self,
        compartment: u32,
        iface: u16,
        method: u16,
        args: [u64; ARGS],
    ) -> Result<u64, GateError> {
        self.endpoint.call(compartment, iface, method, args)
    }

    fn heap(&self, compartment: u32) -> HeapBounds {
        self.endpoint.heap(compartment)
    }
}
