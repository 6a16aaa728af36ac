//! The guest arguments: what follows `--` on the monitor's command line.
//!
//! The monitor packs `argc` NUL-terminated strings at `args_addr` (`args_len` bytes)
//! inside the read-only boot-info window, so they live for the whole run and can be
//! handed out as `&'static str`. Nothing here trusts the block: a range outside the
//! window yields no arguments, a missing final NUL ends the last string at the end of the
//! block, and a string that is not UTF-8 is skipped.

use flexos_abi::{BOOT_INFO_ADDR, BOOT_INFO_SIZE, BootInfo};

/// The guest arguments.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    bytes: &'static [u8],
    argc: usize,
    /// Hide the kernel's own arguments ([`KERNEL_PREFIX`]) from the app.
    app_only: bool,
}

/// Guest arguments starting with this configure the kernel (e.g. `gate.spin=N`) and are
/// not shown to the app's `main`.
pub const KERNEL_PREFIX: &str = "gate.";

impl Args {
    /// No arguments.
    pub const fn empty() -> Self {
        Args {
            bytes: &[],
            argc: 0,
            app_only: false,
        }
    }

    /// The arguments `boot` describes, or none if their range is not inside the
    /// boot-info window.
    pub(crate) fn from_boot(boot: &BootInfo) -> Self {
        let window = BOOT_INFO_ADDR..BOOT_INFO_ADDR + BOOT_INFO_SIZE;
        let (addr, len) = (boot.args_addr, boot.args_len);
        let inside = match addr.checked_add(len) {
            Some(end) => window.contains(&addr) && end <= window.end,
            None => false,
        };
        if boot.argc == 0 || len == 0 || !inside {
            return Args::empty();
        }
        // SAFETY: the range lies inside the boot-info window, which the monitor maps
        // user-readable for the whole run and never changes after boot.
        let bytes =
            unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len as usize) };
        Args {
            bytes,
            argc: boot.argc as usize,
            app_only: false,
        }
    }

    /// All guest arguments of this run, for components that take their own settings
    /// from them (e.g. the network stack's `ip=`), in any compartment.
    pub fn of_run() -> Self {
        Args::from_boot(crate::boot_info())
    }

    /// The same arguments without the kernel's own ones: what the app's `main` gets.
    pub(crate) fn for_app(self) -> Self {
        Args {
            app_only: true,
            ..self
        }
    }

    /// The arguments in order.
    pub fn iter(&self) -> ArgsIter {
        ArgsIter {
            rest: self.bytes,
            remaining: self.argc,
            app_only: self.app_only,
        }
    }

    /// How many arguments [`Args::iter`] yields.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The value of the first `key=value` argument, if any.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.iter().find_map(|arg| {
            arg.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
        })
    }
}

impl IntoIterator for &Args {
    type Item = &'static str;
    type IntoIter = ArgsIter;

    fn into_iter(self) -> ArgsIter {
        self.iter()
    }
}

/// Iterator over [`Args`].
#[derive(Clone, Debug)]
pub struct ArgsIter {
    rest: &'static [u8],
    remaining: usize,
    app_only: bool,
}

impl Iterator for ArgsIter {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        while self.remaining > 0 && !self.rest.is_empty() {
            self.remaining -= 1;
            let end = self
                .rest
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(self.rest.len());
            let arg = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
            if let Ok(arg) = core::str::from_utf8(arg) {
                if self.app_only && arg.starts_with(KERNEL_PREFIX) {
                    continue;
                }
                return Some(arg);
            }
        }
        None
    }
}
