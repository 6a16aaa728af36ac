//! The two wrappers the runtime uses for global state instead of `static mut`.
//!
//! Every compartment is one vCPU running cooperative code and takes no interrupts (its
//! IDT holds only the monitor's trampolines, which run no guest code: they report and
//! either end the run or, under a debugger, resume the interrupted instruction), so a
//! compartment has exactly one thread of execution. Nothing here is ever contended
//! by another CPU; the wrappers exist so that global state is reached through safe,
//! checked APIs:
//!
//! - [`SpinLock`]: exclusive access through a guard; re-entrance (a `Display` impl that
//!   prints, a panic while the console is held) is detected with
//!   [`SpinLock::try_lock`] rather than silently aliasing a `&mut`;
//! - [`BootCell`]: a value set once during boot and shared (`&T`) afterwards, for state
//!   whose type is not `Sync` (the gate endpoint keeps its ring indices in `Cell`s).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// A test-and-set spin lock around a `T`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out at most one guard at a time (acquire/release on `locked`),
// so sharing the lock between contexts only ever moves access to `T`, which is `Send`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinLockGuard { lock: self })
    }

    /// Takes the lock, spinning while it is held.
    ///
    /// On a single vCPU a held lock is never released by someone else: do not call this
    /// where re-entrance is possible; use [`SpinLock::try_lock`] there.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Releases the lock without a guard.
    ///
    /// # Safety
    ///
    /// Whoever holds the guard must never touch the value again (for example because it
    /// is in a frame abandoned by a panic, which never unwinds with `panic = "abort"`).
    pub unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Access to the value of a held [`SpinLock`]; releases the lock on drop.
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `locked` is set by it, so no other
        // reference to the value is live.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow of the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A value set once (during boot) and only shared afterwards: a `static` home for
/// compartment-global state such as the gate endpoint.
///
/// # Why this is sound for a `T` that is not `Sync`
///
/// `static` requires `Sync`, and this type claims it for every `T`. That claim holds
/// because a compartment has exactly one thread of execution (one vCPU, no interrupt
/// handlers in guest code, no threads in the runtime): a `&T` handed out here is only
/// ever used by that one thread, which is all `!Sync` types such as `Cell` require.
/// Re-entrant use on that thread (a gate server running while the same compartment
/// waits for a reply) is what `Cell`-style interior mutability is made for. If the
/// runtime ever gains preemption or a second vCPU per compartment, this impl must go.
///
/// Setting is checked: the value is written exactly once, before any reference to it
/// exists, and [`BootCell::get`] hands out `&T` only after that write completed.
pub struct BootCell<T> {
    /// [`EMPTY`](Self::EMPTY), [`SETTING`](Self::SETTING) or [`SET`](Self::SET).
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: see the type's docs: one thread of execution per compartment, so a shared
// reference to `T` is never used by two threads; the value is written once, before any
// `&T` exists (guarded by `state`).
unsafe impl<T> Sync for BootCell<T> {}

impl<T> BootCell<T> {
    const EMPTY: u8 = 0;
    const SETTING: u8 = 1;
    const SET: u8 = 2;

    /// An empty cell.
    pub const fn new() -> Self {
        BootCell {
            state: AtomicU8::new(Self::EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value` and returns a reference to it, or gives `value` back if the cell
    /// was already set.
    pub fn set(&self, value: T) -> Result<&T, T> {
        if self
            .state
            .compare_exchange(
                Self::EMPTY,
                Self::SETTING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(value);
        }
        // SAFETY: the compare-exchange made us the only writer, and no reference to the
        // value exists yet (`get` returns `None` until `state` is SET).
        unsafe { (*self.value.get()).write(value) };
        self.state.store(Self::SET, Ordering::Release);
        // SAFETY: written just above; from now on only shared references exist.
        Ok(unsafe { (*self.value.get()).assume_init_ref() })
    }

    /// The value, once set.
    #[inline(always)]
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == Self::SET {
            // SAFETY: SET is stored (release) only after the value was written, and the
            // value is never written again, so shared references are all there are.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl<T> Default for BootCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for BootCell<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == Self::SET {
            // SAFETY: SET means the value was initialised; `&mut self` means no
            // reference to it is live.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}
