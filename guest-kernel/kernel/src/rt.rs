//! The boot info and the end of the run: the checks of the monitor's boot-info block,
//! [`boot_info`] for every part of the kernel, and [`exit`].
//!
//! Everything here is a leaf of the kernel (console and hypercalls only), so the gate
//! layer and time can use it; the boot sequence that calls them is in `start`.

use core::sync::atomic::{AtomicPtr, Ordering};

use flexos_abi::{BOOT_MAGIC, BOOT_VERSION, BootInfo};

use crate::{console, hypercall, println};

/// Exit code for a boot info the kernel cannot use (the highest code a guest may pass).
pub const EXIT_BAD_BOOT: i32 = 63;

/// The monitor's boot-info block, once `_start` has checked it.
static BOOT: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());

/// Checks the boot info the monitor passed to `_start` and keeps it for
/// [`boot_info`]; exits with [`EXIT_BAD_BOOT`] (after saying why) if it is unusable.
///
/// # Safety
///
/// `boot` is what the monitor passed in RDI: null, misaligned, or the address of its
/// boot-info block, mapped user-readable and never written for the whole run.
pub(crate) unsafe fn accept_boot_info(boot: *const BootInfo) -> &'static BootInfo {
    if boot.is_null() || !boot.is_aligned() {
        println!("flexos: no usable boot info (RDI = {boot:p}); is this image run by flexos-vmm?");
        exit(EXIT_BAD_BOOT);
    }
    // SAFETY: the caller guarantees a non-null, aligned `boot` is the monitor's block,
    // mapped for the whole run and never written after boot.
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
    info
}

/// Flushes the console and ends the whole run with `code`.
///
/// Codes 0..=63 are the monitor's exit status; others are the monitor's to interpret
/// (it reserves them for itself). Negative codes are passed as their 32-bit pattern.
pub fn exit(code: i32) -> ! {
    console::flush();
    hypercall::exit(u64::from(code.cast_unsigned()))
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
