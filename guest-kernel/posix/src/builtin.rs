//! Built-in read-only files, held in memory: the user database every image has
//! (`/etc/passwd` and `/etc/group`: `root` and `nobody`/`nogroup`, which servers such as
//! Nginx look up before they would drop privileges), and the defaults an image gives in
//! [`crate::System::defaults`]: names in the root directory that a file of the same name
//! on the disk overrides (Nginx's built-in `nginx.conf`).

use core::cell::Cell;

use crate::Global;

/// `/etc/passwd`: the one user there is, and the unprivileged one programs ask for.
const PASSWD: &[u8] = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
/// `/etc/group`.
const GROUP: &[u8] = b"root:x:0:\nnogroup:x:65534:\n";

/// Files by name: (name, contents).
pub type Files = &'static [(&'static str, &'static [u8])];

/// The image's defaults, set once at start.
static DEFAULTS: Global<Cell<Files>> = Global::new(Cell::new(&[]));

pub fn set_defaults(defaults: Files) {
    DEFAULTS.get().set(defaults);
}

/// The built-in file at a path outside the root directory (its parts), if any.
pub fn fixed(parts: &[&str]) -> Option<&'static [u8]> {
    match parts {
        ["etc", "passwd"] => Some(PASSWD),
        ["etc", "group"] => Some(GROUP),
        _ => None,
    }
}

/// The image's default for `name` in the root directory, if it gives one.
pub fn default_for(name: &str) -> Option<&'static [u8]> {
    DEFAULTS
        .get()
        .get()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// An open built-in file.
pub struct Builtin {
    pub bytes: &'static [u8],
    pub offset: u64,
}

impl Builtin {
    /// Copies the bytes at `offset` into `dst`; how many.
    pub fn read_at(&self, offset: u64, dst: &mut [u8]) -> i64 {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let n = dst.len().min(self.bytes.len() - start);
        dst[..n].copy_from_slice(&self.bytes[start..start + n]);
        n as i64
    }
}
