//! The image entry point and the order of boot: the boot-info checks ([`crate::rt`]),
//! the heap, the gate layer ([`crate::gate`]); then the compartment hosting the entry
//! component (component 0) runs the app's `main` and exits with its code, and every
//! other compartment serves gate calls until the run ends.
//!
//! This is the top of the kernel: it calls into every part, and nothing calls back into
//! it, so the parts below it (the gate layer, time) use [`crate::rt`] for the boot info
//! and [`exit`] without a loop back to here.
//!
//! # Entry contract (set up by the monitor)
//!
//! The vCPU starts in 64-bit ring 3 at the ELF entry `_start`, with
//! RDI = address of the [`BootInfo`] (at [`flexos_abi::BOOT_INFO_ADDR`], user read-only),
//! RSP = `stack_top - 8` (so RSP ≡ 8 mod 16, as right after a `call`, which makes
//! `_start` an ordinary `extern "C"` function), RBP = 0 (ends the frame-pointer chain
//! the monitor walks for backtraces) and the private memory identity-mapped.

use flexos_abi::{BOOT_FLAG_TIMINGS, BootInfo, MILESTONE_MAIN};

use crate::components::ENTRY_COMPONENT;
use crate::rt::{EXIT_BAD_BOOT, exit};
use crate::{Args, gate, heap, hypercall, println, rt, time};

unsafe extern "Rust" {
    /// The app's `main`, defined by [`main!`](crate::main).
    fn __flexos_app_main(args: &Args) -> i32;
}

/// The image entry point (ELF `e_entry`), called by nobody: the monitor starts the vCPU
/// here.
///
/// # Safety
///
/// Only the monitor may enter here, once, with the entry contract of this module.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start(boot: *const BootInfo) -> ! {
    // SAFETY: the monitor enters `_start` once, with RDI pointing at its boot-info
    // block (the entry contract above); this is the only call.
    let info = unsafe { rt::accept_boot_info(boot) };

    // SAFETY: the monitor reserves the heap range for us alone, mapped and writable, and
    // this is the only call.
    if let Err(err) = unsafe { heap::init(info.heap_start, info.heap_size) } {
        println!(
            "flexos: unusable heap {:#x}+{:#x} in boot info: {err:?}",
            info.heap_start, info.heap_size
        );
        exit(EXIT_BAD_BOOT);
    }

    // Every compartment: endpoint, router, shared-heap arena, and the servers of the
    // components placed here. Exits with EXIT_BAD_BOOT on an unusable shared region.
    gate::init(info);

    if info.flags & BOOT_FLAG_TIMINGS != 0 {
        hypercall::milestone(MILESTONE_MAIN, time::rdtsc());
    }

    // Only the compartment hosting the entry component runs `main`; the others serve
    // their components' gates until the run ends (`gate::init` checked the placement).
    if u32::from(info.placement[usize::from(ENTRY_COMPONENT)]) != info.compartment_id {
        gate::serve_forever();
    }

    let args = Args::from_boot(info).for_app();
    // SAFETY: `__flexos_app_main` is defined by `main!` in the app with exactly this
    // signature; the linker fails if the app did not declare a main.
    let code = unsafe { __flexos_app_main(&args) };
    exit(code)
}

/// Declares the app's entry point: `flexos_kernel::main!(main);` with
/// `fn main(args: &flexos_kernel::Args) -> i32`. The runtime calls it after boot and
/// exits with its return value.
///
/// The call goes through an opaque function pointer so that `main` keeps its own frame
/// and shows up by name in crash backtraces.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __flexos_app_main(args: &$crate::Args) -> i32 {
            let main: fn(&$crate::Args) -> i32 = $main;
            ::core::hint::black_box(main)(args)
        }
    };
}
