//! The [`interface!`](crate::interface) macro.

/// Declares an interface with stable, explicit ids.
///
/// ```
/// use rpc_shm::SharedBuf;
///
/// rpc_shm::interface! {
///     /// A test callee.
///     pub mod callee (id = 1) {
///         /// Does nothing.
///         fn nop() -> u64 = 0;
///         fn sum6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 = 1;
///         fn touch(buf: SharedBuf) -> u64 = 2;
///         fn check(flag: bool, small: i8) -> () = 3;
///     }
/// }
///
/// struct Impl;
/// impl callee::Api for Impl {
///     fn nop(&self) -> u64 { 0 }
///     fn sum6(&self, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
///         a + b + c + d + e + f
///     }
///     fn touch(&self, buf: SharedBuf) -> u64 { buf.len() as u64 }
///     fn check(&self, _flag: bool, _small: i8) {}
/// }
///
/// fn main() {
///     use rpc_shm::{Dispatch, GateError, Layout};
///     assert_eq!(callee::ID, 1);
///     assert_eq!(callee::methods::sum6, 1);
///     let heap = Layout::new(1 << 20, 2).unwrap().channel_heap(0, 1);
///     let server = callee::Server(Impl);
///     assert_eq!(server.dispatch(callee::methods::sum6, &[1, 2, 3, 4, 5, 6], &heap), Ok(21));
///     assert_eq!(server.dispatch(9, &[0; 6], &heap), Err(GateError::UnknownMethod));
///     // A handle outside the heap is refused before the method runs.
///     assert_eq!(server.dispatch(2, &[4 << 32, 0, 0, 0, 0, 0], &heap),
///                Err(GateError::BadHandle));
///     assert_eq!(server.dispatch(3, &[2, 0, 0, 0, 0, 0], &heap), Err(GateError::BadArgument));
/// }
/// ```
///
/// generates, inside `pub mod callee` (which glob-imports its parent module, so the
/// argument types are those in scope where the macro is used):
///
/// - `pub const ID: u16` and `pub mod methods { pub const nop: u16 = 0; ... }`;
/// - `pub trait Api { fn nop(&self) -> u64; ... }`, what the component implements;
/// - `pub struct Server<T: Api>(pub T)` implementing [`crate::Dispatch`]: every
///   argument is decoded with [`crate::GateSafe::from_word`] (so it is validated), an
///   unknown method id is [`crate::GateError::UnknownMethod`];
/// - `pub struct Client<'a, T: Api + 'static, R: Router + ?Sized>`, built with
///   `Client::new(router, component, local)`: it asks the router once where the
///   component lives. Co-located, each method is a direct call of `local`'s method
///   (one predictable branch; no ring, no copy); remote, it encodes the arguments,
///   calls `router.call(compartment, ID, method, args)` and decodes the result. Every
///   method returns `Result<Ret, GateError>`.
///
/// Every argument and return type must implement [`crate::GateSafe`]; anything else
/// (a reference, a raw pointer, a slice) fails to compile:
///
/// ```compile_fail
/// rpc_shm::interface! {
///     pub mod leaky (id = 2) {
///         fn peek(p: &u64) -> u64 = 0;
///     }
/// }
/// fn main() {}
/// ```
///
/// ```compile_fail
/// rpc_shm::interface! {
///     pub mod leaky (id = 2) {
///         fn peek(p: *const u8) -> u64 = 0;
///     }
/// }
/// fn main() {}
/// ```
///
/// ```compile_fail
/// rpc_shm::interface! {
///     pub mod leaky (id = 2) {
///         fn leak() -> *const u8 = 0;
///     }
/// }
/// fn main() {}
/// ```
///
/// (the same declarations with `u64` compile; `tests/ui` checks the error is
/// "`GateSafe` is not implemented"). At most 6 arguments, and method ids must be
/// distinct, both checked at compile time:
///
/// ```compile_fail
/// rpc_shm::interface! {
///     pub mod twice (id = 3) {
///         fn a() -> u64 = 0;
///         fn b() -> u64 = 0;
///     }
/// }
/// fn main() {}
/// ```
///
/// ```compile_fail
/// rpc_shm::interface! {
///     pub mod wide (id = 4) {
///         fn seven(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8) -> u64 = 0;
///     }
/// }
/// fn main() {}
/// ```
#[macro_export]
macro_rules! interface {
    (
        $(#[$meta:meta])*
        $vis:vis mod $name:ident (id = $id:literal) {
            $(
                $(#[$mmeta:meta])*
                fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty = $mid:literal ;
            )*
        }
    ) => {
        $(#[$meta])*
        $vis mod $name {
            #[allow(unused_imports)]
            use super::*;

            /// Interface id (stable: part of the wire format).
            pub const ID: u16 = $id;

            /// Method ids (stable: part of the wire format).
            #[allow(non_upper_case_globals)]
            pub mod methods {
                $( pub const $method: u16 = $mid; )*
            }

            // Compile-time checks: every type is gate-safe, at most 6 arguments,
            // distinct method ids.
            const _: () = {
                #[allow(dead_code)]
                const fn gate_safe<T: $crate::GateSafe>() {}
                $(
                    $( gate_safe::<$ty>(); )*
                    gate_safe::<$ret>();
                )*
                $(
                    let names: &[&str] = &[$(stringify!($arg)),*];
                    assert!(
                        names.len() <= $crate::ARGS,
                        concat!("gate method `", stringify!($method), "` takes more than 6 arguments"),
                    );
                )*
                let ids: &[u16] = &[$($mid),*];
                let mut i = 0;
                while i < ids.len() {
                    let mut j = i + 1;
                    while j < ids.len() {
                        assert!(ids[i] != ids[j], "duplicate method id in interface");
                        j += 1;
                    }
                    i += 1;
                }
            };

            /// What a component implementing this interface provides.
            pub trait Api {
                $(
                    $(#[$mmeta])*
                    fn $method(&self $(, $arg: $ty)*) -> $ret;
                )*
            }

            /// Serves this interface with `T` (register it with
            /// [`Endpoint::register`]($crate::Endpoint::register) under [`ID`]).
            pub struct Server<T: Api>(pub T);

            impl<T: Api> $crate::Dispatch for Server<T> {
                #[allow(unused_variables, unused_mut)]
                fn dispatch(
                    &self,
                    method: u16,
                    args: &[u64; $crate::ARGS],
                    heap: &$crate::HeapBounds,
                ) -> ::core::result::Result<u64, $crate::GateError> {
                    match method {
                        $(
                            methods::$method => {
                                let mut words = args.iter().copied();
                                $(
                                    let $arg = <$ty as $crate::GateSafe>::from_word(
                                        words.next().unwrap_or(0),
                                        heap,
                                    )?;
                                )*
                                ::core::result::Result::Ok($crate::GateSafe::to_word(
                                    self.0.$method($($arg),*),
                                ))
                            }
                        )*
                        _ => ::core::result::Result::Err($crate::GateError::UnknownMethod),
                    }
                }
            }

            /// Calls this interface: directly when the component is co-located,
            /// through the router otherwise.
            pub struct Client<'a, T: Api + 'static, R: $crate::Router + ?Sized> {
                router: &'a R,
                route: $crate::Route,
                local: &'static T,
                heap: $crate::HeapBounds,
            }

            impl<'a, T: Api + 'static, R: $crate::Router + ?Sized> Client<'a, T, R> {
                /// A client of `component`; `local` is this compartment's instance,
                /// used when the router says the component is here.
                pub fn new(router: &'a R, component: u16, local: &'static T) -> Self {
                    let route = router.route(component);
                    // Handles in replies must lie in the channel with the callee.
                    let heap = match route {
                        $crate::Route::Remote(compartment) => router.heap(compartment),
                        $crate::Route::Local => $crate::HeapBounds::EMPTY,
                    };
                    Client {
                        router,
                        route,
                        local,
                        heap,
                    }
                }

                /// The route chosen at construction.
                pub fn route(&self) -> $crate::Route {
                    self.route
                }

                $(
                    $(#[$mmeta])*
                    #[inline]
                    #[allow(unused_mut)]
                    pub fn $method(
                        &self $(, $arg: $ty)*
                    ) -> ::core::result::Result<$ret, $crate::GateError> {
                        match self.route {
                            $crate::Route::Local => {
                                ::core::result::Result::Ok(self.local.$method($($arg),*))
                            }
                            $crate::Route::Remote(compartment) => {
                                let mut words = [0u64; $crate::ARGS];
                                let mut next = words.iter_mut();
                                $(
                                    if let ::core::option::Option::Some(w) = next.next() {
                                        *w = $crate::GateSafe::to_word($arg);
                                    }
                                )*
                                let ret = self.router.call(
                                    compartment,
                                    ID,
                                    methods::$method,
                                    words,
                                )?;
                                <$ret as $crate::GateSafe>::from_word(ret, &self.heap)
                            }
                        }
                    }
                )*
            }
        }
    };
}
