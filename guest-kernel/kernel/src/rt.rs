//! Boot and exit: the image entry point, the boot-info checks, and the hook through
//! which the runtime calls the app's `main`.
//!
//! Every compartment runs `_start`: it checks the boot info, sets up the heap and the
//! gate layer ([`crate::gate`]); then the compartment hosting the entry component
//! (component 0) runs `main` and exits with its code, and every other compartment
//! serves gate calls until the run ends.
//!
//! # Entry contract (set up by the monitor)
//!
//! The vCPU starts in 64-bit ring 3 at the ELF entry `_start`, with
//! RDI = address of the [`BootInfo`] (at [`flexos_abi::BOOT_INFO_ADDR`], user read-only),
//! RSP = `stack_top - 8` (so RSP ≡ 8 mod 16, as right after a `call`, which makes
//! `_start` an ordinary `extern "C"` function), RBP = 0 (ends the frame-pointer chain
//! the monitor walks for backtraces) and the private memory identity-mapped.

use core::sync::atomic::{AtomicPtr, Ordering};

use flexos_abi::{BOOT_FLAG_TIMINGS, BOOT_MAGIC, BOOT_VERSION, BootInfo, MILESTONE_MAIN};

use crate::components::ENTRY_COMPONENT;
use crate::{Args, console, gate, heap, hypercall, println, time};

/// Exit code for a boot info the kernel cannot use (the highest code a guest may pass).
pub const EXIT_BAD_BOOT: i32 = 63;

/// The monitor's boot-info block, once `_start` has checked it.
static BOOT: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());

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
    if boot.is_null() || !boot.is_aligned() {
        println!("flexos: no usable boot info (RDI = {boot:p}); is this image run by flexos-vmm?");
        exit(EXIT_BAD_BOOT);
    }
    // SAFETY: the monitor passes the address of its boot-info block, mapped user-readable
    // for the whole run and never written after boot; the pointer is non-null and aligned.
    let info: &'static BootInfo = unsafe { &*boot };
    if info.magic != BOOT_MAGIC {
        println!(
            "flexos: bad boot info magic {:#018x} (want {BOOT_MAGIC:#018x}); is this image run by flexos-vmm?",
            info.magic
        );
        exit(EXIT_BAD_BOOT);
    }
    if info.version != BOOT_VERSION {
        println!(
            "flexos: boot info version {} but this kernel speaks version {BOOT_VERSION}; rebuild the image and the monitor together",
            info.version
        );
        exit(EXIT_BAD_BOOT);
    }
    BOOT.store(boot.cast_mut(), Ordering::Release);

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

/// Flushes the console and ends the whole run with `code`.
///
/// Codes 0..=63 are the monitor's exit status; others are the monitor's to interpret
/// (it reserves them for itself). Negative codes are passed as their 32-bit pattern.
pub fn exit(code: i32) -> ! {
    console::flush();
    hypercall::exit(u64::from(code as u32))
}

/// The boot info of this compartment.
///
/// # Panics
///
/// If called before `_start` checked the boot info (impossible from app code).
pub fn boot_info() -> &'static BootInfo {
    let boot = BOOT.load(Ordering::Acquire);
    assert!(!boot.is_null(), "boot_info() called before boot");
    // SAFETY: `_start` stored a checked pointer to the monitor's block, which stays
    // mapped and unchanged for the whole run.
    unsafe { &*boot }
}

/// This compartment's id (0-based).
pub fn compartment_id() -> u32 {
    boot_info().compartment_id
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
