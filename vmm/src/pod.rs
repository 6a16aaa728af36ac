//! `vm-memory` access to the abi crate's plain-data structures.
//!
//! The abi crate has no dependencies (it is also built for the guest), so it cannot
//! implement `ByteValued` itself; this newtype does it on the monitor side.

use flexos_abi::{
    BootInfo, ConsoleWrite, ExceptionFrame, ExitArgs, MilestoneArgs, PanicArgs, SleepArgs,
};
use vm_memory::ByteValued;

/// An abi structure readable and writable through `vm-memory`.
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
pub struct Pod<T>(pub T);

// SAFETY: (this reasoning holds for every impl below) each wrapped type is `repr(C)`,
// made only of integer fields and byte arrays with no padding (sizes are pinned by the
// abi crate's tests), so every byte pattern is a valid value and no uninitialised bytes
// are ever exposed.
unsafe impl ByteValued for Pod<ConsoleWrite> {}
// SAFETY: see above.
unsafe impl ByteValued for Pod<ExitArgs> {}
// SAFETY: see above.
unsafe impl ByteValued for Pod<PanicArgs> {}
// SAFETY: see above.
unsafe impl ByteValued for Pod<MilestoneArgs> {}
// SAFETY: see above.
unsafe impl ByteValued for Pod<ExceptionFrame> {}
// SAFETY: see above.
unsafe impl ByteValued for Pod<SleepArgs> {}
// SAFETY: see above.
unsafe impl ByteValued for Pod<BootInfo> {}
