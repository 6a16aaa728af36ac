//! [`RamFs`]: the `fs` interface's files in the heap of the compartment hosting `vfs`
//! (guest argument `ramfs`), gone when the run ends. It is what FlexOS's SQLite
//! figures ran on (a RAM file system in the second VM), so it is kept cheap per call:
//! each file is one `Vec<u8>`, found by name in a short vector (a database, its
//! journal or WAL), reached by id through a fixed table, and a read or write copies
//! its bytes once, straight between the file and the caller's buffer
//! ([`RamFs::read_with`], [`RamFs::write_with`]). Nothing is allocated per call except
//! when a file is created or grows past its capacity (which doubles, up to the cap).
//!
//! It has the semantics of the FAT [`Volume`](crate::volume::Volume) (the host tests
//! run one suite against both): the same names, matched with ASCII case folded and
//! refused at creation where the volume refuses them ([`names::creatable`]); the same
//! ids (the lowest free, at most [`MAX_OPEN`]; a create that finds no free id still
//! creates the file, as on FAT); zero-filled gaps; the same largest file
//! ([`MAX_FILE`]); `delete` closes the ids open on the file; `list` in directory order
//! (a new file takes the place of the first deleted one); `sync` does nothing and
//! succeeds. Where it differs, it is simpler: two ids on one file see each other's
//! writes at once, `list` shows the size of a file not yet synced, and a write that
//! does not fit changes nothing (FAT may keep part of it).
//!
//! Its size is bounded: the files' sizes together stay within a cap in bytes
//! (`vfs.ramfs=MiB`, else [`default_cap`], half of the compartment's heap). A write or
//! truncate that would pass it, or that finds the heap full, returns `E_NO_SPACE`,
//! the code of a full FAT volume, so SQLite reports SQLITE_FULL. A file grows only if
//! the heap keeps some room free afterwards, so a full heap is that code too, not a
//! failed allocation elsewhere in the compartment.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use crate::codes::{E_BAD_FILE, E_BUSY, E_INVALID, E_NO_SPACE, E_NOT_FOUND, E_TOO_MANY};
use crate::files::Files;
use crate::names;
use crate::volume::{MAX_FILE, MAX_OPEN};

/// The guest argument that serves the files from RAM instead of the disk.
pub const RAMFS_ARG: &str = "ramfs";
/// The guest argument's key that sets the cap, in MiB (`vfs.ramfs=64`).
pub const CAP_KEY: &str = "vfs.ramfs";
/// Largest `vfs.ramfs=` value, in MiB: far beyond any compartment's memory (the heap
/// runs out first, with the same code), small enough that the bytes fit a `u64`.
pub const MAX_CAP_MIB: u64 = 1 << 20;

const MIB: u64 = 1 << 20;

/// The cap `vfs.ramfs=TEXT` asks for, in bytes: a decimal count of MiB,
/// `0..=`[`MAX_CAP_MIB`] (0: every write that grows a file fails).
pub fn parse_cap(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mib: u64 = text.parse().ok()?;
    (mib <= MAX_CAP_MIB).then_some(mib * MIB)
}

/// The cap without `vfs.ramfs=`: half of a heap of `heap_size` bytes, in whole MiB. The
/// other half stays for what shares the compartment (all of SQLite in one VM) and for
/// a file's spare capacity while it grows.
pub fn default_cap(heap_size: u64) -> u64 {
    heap_size / 2 / MIB * MIB
}

struct Node {
    name: String,
    data: Vec<u8>,
}

/// Files in RAM, within a cap. See the module docs.
pub struct RamFs {
    /// The directory, in order; `None` where a file was deleted (the next created file
    /// takes the first such place, as a FAT directory entry is reused).
    nodes: Vec<Option<Node>>,
    /// Open ids: the index in `nodes` of the file each is open on.
    open: [Option<usize>; MAX_OPEN],
    /// Bytes the files may hold together.
    cap: u64,
    /// Bytes they hold: the sum of their sizes.
    used: u64,
}

impl RamFs {
    /// No files; their sizes together at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        RamFs {
            nodes: Vec::new(),
            open: [None; MAX_OPEN],
            cap,
            used: 0,
        }
    }

    /// The cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes the files hold (the sum of their sizes).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The index in `nodes` of the file `name` (ASCII case folded, as FAT compares).
    fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.as_ref()
                .is_some_and(|n| n.name.eq_ignore_ascii_case(name))
        })
    }

    /// The file open as `id`.
    fn node(&mut self, id: i64) -> Result<&mut Node, i64> {
        let index = usize::try_from(id)
            .ok()
            .and_then(|i| self.open.get(i).copied().flatten())
            .ok_or(E_BAD_FILE)?;
        // An open id always names a live file: `delete` closes the ids first.
        self.nodes[index].as_mut().ok_or(E_BAD_FILE)
    }

    /// Creates `name`, empty; returns its index.
    fn create(&mut self, name: &str) -> Result<usize, i64> {
        if names::check(name.as_bytes()).is_err() || !names::creatable(name) {
            return Err(E_INVALID);
        }
        let mut owned = String::new();
        owned.try_reserve(name.len()).map_err(|_| E_NO_SPACE)?;
        owned.push_str(name);
        let node = Some(Node {
            name: owned,
            data: Vec::new(),
        });
        if let Some(i) = self.nodes.iter().position(Option::is_none) {
            self.nodes[i] = node;
            return Ok(i);
        }
        self.nodes.try_reserve(1).map_err(|_| E_NO_SPACE)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Reads up to `len` bytes at `offset` of file `id` and hands them to `out` in one
    /// slice; returns how many (0 at the end, and `out` is not called), or `out`'s error.
    pub fn read_with(
        &mut self,
        id: i64,
        offset: u64,
        len: usize,
        out: impl FnOnce(&[u8]) -> Result<(), i64>,
    ) -> i64 {
        let data = match self.node(id) {
            Ok(node) => &node.data,
            Err(code) => return code,
        };
        let Some(start) = usize::try_from(offset).ok().filter(|&o| o < data.len()) else {
            return 0;
        };
        let n = len.min(data.len() - start);
        match out(&data[start..start + n]) {
            Ok(()) => n as i64,
            Err(code) => code,
        }
    }

    /// Writes `len` bytes at `offset` of file `id`, which `fill` puts straight into the
    /// file (a gap before them zero-filled); returns `len`. If `fill` fails the file
    /// has grown to `offset + len` with zeros there, and its error is returned: the
    /// server's `fill` is a copy from a buffer it has checked, which cannot fail.
    pub fn write_with(
        &mut self,
        id: i64,
        offset: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), i64>,
    ) -> i64 {
        // Checked before the id, as on FAT.
        let end = offset.saturating_add(len as u64);
        if end > MAX_FILE {
            return E_NO_SPACE;
        }
        let (cap, mut used) = (self.cap, self.used);
        let node = match self.node(id) {
            Ok(node) => node,
            Err(code) => return code,
        };
        if let Err(code) = grow(&mut node.data, end, cap, &mut used) {
            return code;
        }
        // `end` <= the file's length now, and both fit in usize (`grow` checked).
        let result = fill(&mut node.data[offset as usize..end as usize]);
        self.used = used;
        match result {
            Ok(()) => len as i64,
            Err(code) => code,
        }
    }
}

/// Heap a file's growth must leave free: what the rest of the compartment allocates
/// between two calls (a name, a gate buffer; SQLite's own allocations when it shares
/// the compartment fail softly, as SQLITE_NOMEM). So a full heap is `E_NO_SPACE` here,
/// not a failed allocation, and a panic, somewhere else.
const HEADROOM: usize = 256 << 10;

/// Whether the heap can still give `bytes` in one piece (asked only when a file's
/// capacity grows, so rarely).
fn heap_has(bytes: usize) -> bool {
    let mut probe = Vec::<u8>::new();
    let ok = probe.try_reserve_exact(bytes).is_ok();
    // The pointer escapes, so the allocation (and its failure) cannot be optimised out.
    core::hint::black_box(probe.as_ptr());
    ok
}

/// Grows `data` to `end` bytes with zeros (nothing if it is that long already), if the
/// files' sizes (`used`) stay within `cap` and the heap has room; else `E_NO_SPACE`.
fn grow(data: &mut Vec<u8>, end: u64, cap: u64, used: &mut u64) -> Result<(), i64> {
    let len = data.len() as u64;
    if end <= len {
        return Ok(());
    }
    let more = end - len;
    if more > cap - *used {
        return Err(E_NO_SPACE);
    }
    let end = usize::try_from(end).map_err(|_| E_NO_SPACE)?;
    if end > data.capacity() {
        // Doubling keeps appends amortised O(1), but one file's capacity never passes
        // the cap; if the heap has no room for the doubled size, exactly `end` may fit.
        let before = data.capacity();
        let limit = usize::try_from(cap).unwrap_or(usize::MAX).max(end);
        let target = before.saturating_mul(2).clamp(end, limit);
        let reserved = data.try_reserve_exact(target - data.len()).is_ok()
            || data.try_reserve_exact(end - data.len()).is_ok();
        if !reserved || !heap_has(HEADROOM) {
            data.shrink_to(before);
            return Err(E_NO_SPACE);
        }
    }
    data.resize(end, 0);
    *used += more;
    Ok(())
}

impl Files for RamFs {
    fn open(&mut self, name: &str, create: bool) -> i64 {
        let index = match self.find(name) {
            Some(i) => i,
            None if create => match self.create(name) {
                Ok(i) => i,
                Err(code) => return code,
            },
            None => return E_NOT_FOUND,
        };
        match self.open.iter().position(Option::is_none) {
            Some(id) => {
                self.open[id] = Some(index);
                id as i64
            }
            None => E_TOO_MANY,
        }
    }

    fn read_at(&mut self, id: i64, offset: u64, buf: &mut [u8]) -> i64 {
        self.read_with(id, offset, buf.len(), |src| {
            buf[..src.len()].copy_from_slice(src);
            Ok(())
        })
    }

    fn write_at(&mut self, id: i64, offset: u64, data: &[u8]) -> i64 {
        self.write_with(id, offset, data.len(), |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })
    }

    fn size(&mut self, id: i64) -> i64 {
        match self.node(id) {
            Ok(node) => node.data.len() as i64,
            Err(code) => code,
        }
    }

    fn truncate(&mut self, id: i64, len: u64) -> i64 {
        if len > MAX_FILE {
            return E_NO_SPACE;
        }
        let (cap, mut used) = (self.cap, self.used);
        let node = match self.node(id) {
            Ok(node) => node,
            Err(code) => return code,
        };
        let size = node.data.len() as u64;
        if len < size {
            // `len` < the length, so it fits in usize.
            node.data.truncate(len as usize);
            if node.data.len() < node.data.capacity() / 2 {
                // Give back what a shrunk file no longer needs: the cap counts sizes,
                // so memory held beyond them should stay small.
                node.data.shrink_to(node.data.len());
            }
            used -= size - len;
        } else if let Err(code) = grow(&mut node.data, len, cap, &mut used) {
            return code;
        }
        self.used = used;
        0
    }

    fn sync(&mut self, id: i64) -> i64 {
        // Nothing to make durable; the id must still be open, as on FAT.
        match self.node(id) {
            Ok(_) => 0,
            Err(code) => code,
        }
    }

    fn delete(&mut self, name: &str) -> i64 {
        let Some(index) = self.find(name) else {
            return E_NOT_FOUND;
        };
        for slot in self.open.iter_mut() {
            if *slot == Some(index) {
                *slot = None;
            }
        }
        if let Some(node) = self.nodes[index].take() {
            self.used -= node.data.len() as u64;
        }
        0
    }

    fn rename(&mut self, from: &str, to: &str) -> i64 {
        let Some(index) = self.find(from) else {
            return E_NOT_FOUND;
        };
        let target = self.find(to).filter(|&t| t != index);
        let is_open = |i: usize| self.open.contains(&Some(i));
        if is_open(index) || target.is_some_and(is_open) {
            return E_BUSY;
        }
        if !names::creatable(to) {
            return E_INVALID;
        }
        if let Some(t) = target
            && let Some(node) = self.nodes[t].take()
        {
            self.used -= node.data.len() as u64;
        }
        if let Some(node) = self.nodes[index].as_mut() {
            node.name = String::from(to);
        }
        0
    }

    fn exists(&mut self, name: &str) -> i64 {
        i64::from(self.find(name).is_some())
    }

    fn close(&mut self, id: i64) -> i64 {
        match usize::try_from(id).ok().and_then(|i| self.open.get_mut(i)) {
            Some(slot @ Some(_)) => {
                *slot = None;
                0
            }
            _ => E_BAD_FILE,
        }
    }

    fn list(&mut self) -> Result<String, i64> {
        let mut out = String::new();
        for node in self.nodes.iter().flatten() {
            let _ = writeln!(out, "{}\t{}", node.name, node.data.len());
        }
        Ok(out)
    }
}
