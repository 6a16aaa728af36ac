//! The directory `--core DIR` names, written as if another local user could plant
//! anything in it. The monitor usually runs as root, so a symlink or hard link at a
//! core's name would make it overwrite whatever file that link leads to, and a FIFO
//! would block its open for ever (no report, no exit). So:
//!
//! - the directory is opened once, without following a symlink at its own name
//!   (`O_DIRECTORY | O_NOFOLLOW`), and every name below is resolved relative to that
//!   descriptor, so swapping the directory for a link mid-run changes nothing;
//! - each core is written to a fresh hidden name created with `O_CREAT | O_EXCL |
//!   O_NOFOLLOW` (never an existing file, never through a link), mode 0600 (a core
//!   holds guest memory), then renamed into place, so nobody ever sees half a core;
//! - the rename replaces only an old core: a plain file with one link. Anything else
//!   at the name (a symlink, a hard link, a FIFO, a directory) is left alone and the
//!   core takes the next free name `<stem>.1.core`, `<stem>.2.core`, ... with a warning;
//! - a core that cannot be finished (a full file system) is removed.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Alternative names tried when the core's own name is taken by something else.
const ALTERNATIVES: u32 = 100;

/// An open `--core` directory.
#[derive(Debug)]
pub struct CoreDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Where a core went.
#[derive(Debug, PartialEq, Eq)]
pub struct Placed {
    pub path: PathBuf,
    /// Set when the core's own name held something else, left alone: what it was.
    pub instead_of: Option<(PathBuf, &'static str)>,
}

/// Why a core could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CoreFileError {
    #[error("cannot create a file in {dir}: {source}")]
    Create { dir: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}; removed the partial file")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot name the core in {dir}: {source}; removed it")]
    Rename { dir: PathBuf, source: io::Error },
}

impl CoreDir {
    /// Creates `path` (0700, with missing parents) if it does not exist and opens it.
    /// A symlink at `path` itself is refused, not followed.
    pub fn open(path: &Path) -> io::Result<CoreDir> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
        {
            Ok(()) => {}
            // `recursive` fails with AlreadyExists when the name is not a directory;
            // the open below says what it is instead.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let name = c_path(path.as_os_str())?;
        // SAFETY: `name` is NUL-terminated and outlives the call; the descriptor
        // returned is owned below and closed once.
        let fd = unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // With O_DIRECTORY a symlink fails as ENOTDIR, not ELOOP: look at the name.
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) if link => {
                    io::Error::other("it is a symbolic link (not followed)")
                }
                Some(libc::ENOTDIR) => io::Error::other("it is not a directory"),
                _ => e,
            });
        }
        // SAFETY: `fd` is a descriptor this call just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(CoreDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory as the user named it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file named `name` (no `/`) with `fill`, as the module docs say.
    pub fn write(
        &self,
        name: &str,
        fill: impl FnOnce(File) -> io::Result<()>,
    ) -> Result<Placed, CoreFileError> {
        let (file, temp) = self.create_temp(name)?;
        if let Err(source) = fill(file) {
            self.unlink(&temp);
            return Err(CoreFileError::Write {
                path: self.path.join(name),
                source,
            });
        }
        match self.place(&temp, name) {
            Ok(placed) => Ok(placed),
            Err(source) => {
                self.unlink(&temp);
                Err(CoreFileError::Rename {
                    dir: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// A new empty file under a hidden name nobody else has.
    fn create_temp(&self, name: &str) -> Result<(File, String), CoreFileError> {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let mut last = io::Error::from_raw_os_error(libc::EEXIST);
        for _ in 0..ALTERNATIVES {
            let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
            let temp = format!(".{name}.{}.{serial}.tmp", std::process::id());
            let c = c_name(&temp).map_err(|source| self.create_error(source))?;
            // SAFETY: the directory descriptor is open for `self`'s life; `c` is
            // NUL-terminated; the descriptor returned is owned below.
            let fd = unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            };
            if fd >= 0 {
                // SAFETY: `fd` was just opened by this call and is owned by nothing else.
                return Ok((unsafe { File::from_raw_fd(fd) }, temp));
            }
            last = io::Error::last_os_error();
            if last.raw_os_error() != Some(libc::EEXIST) {
                break;
            }
        }
        Err(self.create_error(last))
    }

    fn create_error(&self, source: io::Error) -> CoreFileError {
        CoreFileError::Create {
            dir: self.path.clone(),
            source,
        }
    }

    /// Renames `temp` to `name`, or to the first free alternative when `name` holds
    /// something other than an old core.
    fn place(&self, temp: &str, name: &str) -> io::Result<Placed> {
        let taken = match self.kind_at(name)? {
            None => None,
            Some(Kind::OldCore) => {
                self.rename(temp, name, false)?;
                return Ok(Placed {
                    path: self.path.join(name),
                    instead_of: None,
                });
            }
            Some(Kind::Other(what)) => Some((self.path.join(name), what)),
        };
        if taken.is_none() {
            match self.rename(temp, name, true) {
                Ok(()) => {
                    return Ok(Placed {
                        path: self.path.join(name),
                        instead_of: None,
                    })
                }
                // Planted between the look and the rename: take another name.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        let instead_of = taken.or_else(|| Some((self.path.join(name), "a file that appeared")));
        let stem = name.strip_suffix(".core").unwrap_or(name);
        for n in 1..=ALTERNATIVES {
            let other = format!("{stem}.{n}.core");
            match self.rename(temp, &other, true) {
                Ok(()) => {
                    return Ok(Placed {
                        path: self.path.join(other),
                        instead_of,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{name} and {ALTERNATIVES} alternatives are all taken"
        )))
    }

    /// What is at `name`, without following a link.
    fn kind_at(&self, name: &str) -> io::Result<Option<Kind>> {
        let c = c_name(name)?;
        // SAFETY: zeroed `stat` is a valid value for the kernel to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the directory descriptor is open; `c` is NUL-terminated; `st` is a
        // writable `stat`.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(match st.st_mode & libc::S_IFMT {
            libc::S_IFREG if st.st_nlink == 1 => Kind::OldCore,
            libc::S_IFREG => Kind::Other("a file with other hard links"),
            libc::S_IFLNK => Kind::Other("a symbolic link"),
            libc::S_IFIFO => Kind::Other("a FIFO"),
            libc::S_IFDIR => Kind::Other("a directory"),
            libc::S_IFSOCK => Kind::Other("a socket"),
            _ => Kind::Other("a device node"),
        }))
    }

    fn rename(&self, from: &str, to: &str, no_replace: bool) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let dir = self.fd.as_raw_fd();
        let flags = if no_replace {
            libc::RENAME_NOREPLACE
        } else {
            0
        };
        // SAFETY: both names are NUL-terminated and relative to the open directory.
        let rc = unsafe { libc::renameat2(dir, from.as_ptr(), dir, to.as_ptr(), flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn unlink(&self, name: &str) {
        if let Ok(c) = c_name(name) {
            // SAFETY: `c` is NUL-terminated and relative to the open directory; a
            // failure leaves a hidden temporary file, nothing worse.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        }
    }
}

enum Kind {
    /// A plain file with one link: a core of an earlier run, replaced.
    OldCore,
    Other(&'static str),
}

fn c_path(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes()).map_err(|_| io::Error::other("the path contains a NUL byte"))
}

/// A name inside the directory: no `/`, no NUL.
fn c_name(name: &str) -> io::Result<CString> {
    if name.contains('/') || name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::other(format!("{name:?} is not a file name")));
    }
    c_path(OsStr::new(name))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("core-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &CoreDir, name: &str, bytes: &[u8]) -> Result<Placed, CoreFileError> {
        dir.write(name, |mut f| f.write_all(bytes))
    }

    /// Names in `dir`, sorted (hidden temporaries included).
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_core_is_private_and_an_old_one_is_replaced() {
        let root = scratch("plain");
        let dir = CoreDir::open(&root.join("a/b")).unwrap();
        let placed = write(&dir, "x.0.app.core", b"first").unwrap();
        assert_eq!(placed.path, root.join("a/b/x.0.app.core"));
        assert_eq!(placed.instead_of, None);
        let meta = std::fs::metadata(&placed.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(root.join("a/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        write(&dir, "x.0.app.core", b"second").unwrap();
        assert_eq!(std::fs::read(&placed.path).unwrap(), b"second");
        assert_eq!(names(&root.join("a/b")), ["x.0.app.core"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_symlink_or_hard_link_at_the_name_is_never_written_through() {
        let root = scratch("links");
        let victim = root.join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        let cores = root.join("cores");
        std::fs::create_dir(&cores).unwrap();
        std::os::unix::fs::symlink(&victim, cores.join("x.0.app.core")).unwrap();
        std::fs::hard_link(&victim, cores.join("x.1.net.core")).unwrap();
        let dir = CoreDir::open(&cores).unwrap();

        let placed = write(&dir, "x.0.app.core", b"core").unwrap();
        assert_eq!(placed.path, cores.join("x.0.app.1.core"));
        assert_eq!(
            placed.instead_of,
            Some((cores.join("x.0.app.core"), "a symbolic link"))
        );
        let placed = write(&dir, "x.1.net.core", b"core").unwrap();
        assert_eq!(placed.path, cores.join("x.1.net.1.core"));
        assert_eq!(placed.instead_of.unwrap().1, "a file with other hard links");

        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert_eq!(std::fs::metadata(&victim).unwrap().nlink(), 2);
        assert!(std::fs::symlink_metadata(cores.join("x.0.app.core"))
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_fifo_at_the_name_does_not_block() {
        let root = scratch("fifo");
        let fifo = CString::new(root.join("x.0.app.core").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let dir = CoreDir::open(&root).unwrap();
        let placed = write(&dir, "x.0.app.core", b"core").unwrap();
        assert_eq!(placed.path, root.join("x.0.app.1.core"));
        assert_eq!(placed.instead_of.unwrap().1, "a FIFO");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn taken_alternatives_are_skipped() {
        let root = scratch("alt");
        std::fs::create_dir(root.join("x.core")).unwrap();
        std::fs::create_dir(root.join("x.1.core")).unwrap();
        let dir = CoreDir::open(&root).unwrap();
        let placed = write(&dir, "x.core", b"core").unwrap();
        assert_eq!(placed.path, root.join("x.2.core"));
        assert_eq!(placed.instead_of.unwrap().1, "a directory");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let root = scratch("dirlink");
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        let err = CoreDir::open(&root.join("link")).unwrap_err();
        assert_eq!(err.to_string(), "it is a symbolic link (not followed)");
        std::fs::write(root.join("file"), b"").unwrap();
        let err = CoreDir::open(&root.join("file")).unwrap_err();
        assert_eq!(err.to_string(), "it is not a directory");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let root = scratch("fail");
        let dir = CoreDir::open(&root).unwrap();
        let err = dir
            .write("x.core", |mut f| {
                f.write_all(b"half")?;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            })
            .unwrap_err();
        assert!(
            err.to_string().ends_with("; removed the partial file"),
            "{err}"
        );
        assert!(names(&root).is_empty(), "{:?}", names(&root));
        std::fs::remove_dir_all(root).unwrap();
    }
}
