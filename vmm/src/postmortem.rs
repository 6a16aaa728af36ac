//! Post-mortem debugging (`--core`, `--gdb-on-crash`): the run goes at full speed under
//! a debugger that only a crash stops. Then every compartment is stopped (all-stop, the
//! debugger's machinery), one core file per compartment is written with the registers
//! each had at that moment, and gdb may attach to the stopped run as with `--gdb`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::Signal;
use kvm_bindings::kvm_sregs;

use crate::core_dir::CoreDir;
use crate::coredump::{self, CoreOwner, CoreThread};
use crate::debug::listen::GdbListener;
use crate::debug::stub::{self, SessionEnd};
use crate::debug::Debugger;
use crate::escape;

/// What to do on a crash, as the command line asked.
#[derive(Clone, Debug, Default)]
pub struct PostMortemPlan {
    /// `--core`: where the core files go.
    pub core_dir: Option<PathBuf>,
    /// `--gdb-on-crash`: where to wait for gdb.
    pub gdb: Option<String>,
    /// `--gdb-wait`: how long to wait for it (`None`: for ever).
    pub gdb_wait: Option<Duration>,
}

impl PostMortemPlan {
    /// True when a crash must stop the run for post-mortem work.
    pub fn wanted(&self) -> bool {
        self.core_dir.is_some() || self.gdb.is_some()
    }
}

/// What the watcher tells the monitor.
pub enum PostMortemEvent {
    /// The core files written, in compartment order.
    Cores(Vec<PathBuf>),
    /// How the GDB session after the crash ended.
    Gdb(SessionEnd),
}

/// The watcher's part of the run, with the `--gdb-on-crash` address already bound.
pub struct Watcher {
    pub core_dir: Option<PathBuf>,
    pub gdb: Option<GdbListener>,
    pub gdb_wait: Option<Duration>,
    /// The image file, whose stem names the cores.
    pub image: PathBuf,
}

/// Watches the run on a thread of its own until a compartment crashes; then writes the
/// cores and waits for gdb as asked, and lets the run end (resuming a crash stop ends
/// it with the report). `tell` hears what happened, the cores always before the run can
/// end.
pub fn watch_in_background(
    w: Watcher,
    dbg: Arc<Debugger>,
    tell: impl Fn(PostMortemEvent) + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("post-mortem".into())
        .spawn(move || {
            crate::sandbox::enter_thread(crate::sandbox::Thread::PostMortem);
            let Some((id, signal, crashed_at)) = dbg.wait_for_crash() else {
                return;
            };
            if let Some(dir) = &w.core_dir {
                let paths = write_cores(dir, &w.image, &dbg, id, signal);
                tracing::debug!(
                    after_crash_us = crashed_at.elapsed().as_micros(),
                    files = paths.len(),
                    "core files written"
                );
                if !paths.is_empty() {
                    tell(PostMortemEvent::Cores(paths));
                }
            }
            let Some(listener) = w.gdb else {
                dbg.detach();
                return;
            };
            let addr = listener.address();
            crate::stderr_line!(
                "flexos-vmm: compartment {id} ({}) crashed; waiting for gdb on {addr} (target remote {addr})",
                escape::line(&dbg.names[id as usize])
            );
            match listener.wait_for_client(w.gdb_wait) {
                Ok(true) => tell(PostMortemEvent::Gdb(stub::session(listener, &dbg))),
                Ok(false) => dbg.detach(),
                Err(e) => {
                    crate::stderr_line!("flexos-vmm: {e}; ending the run without the debugger");
                    dbg.detach();
                }
            }
        })
        .map(drop)
}

/// The file name of compartment `id`'s core, named `name`, of the run of `image`.
pub fn core_name(image: &Path, id: u32, name: &str) -> String {
    let stem = image
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy());
    // A name from a placement file must not lead out of DIR.
    let name: String = name
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    format!("{stem}.{id}.{name}.core")
}

/// The Linux number of a signal (a core's `si_signo`) from GDB's numbering, which
/// differs for some.
fn linux_signal(signal: Signal) -> u32 {
    let linux = match signal {
        Signal::SIGBUS => libc::SIGBUS,
        Signal::SIGSYS => libc::SIGSYS,
        Signal::SIGSTOP => libc::SIGSTOP,
        Signal::SIGABRT => libc::SIGABRT,
        Signal::SIGFPE => libc::SIGFPE,
        Signal::SIGILL => libc::SIGILL,
        Signal::SIGTRAP => libc::SIGTRAP,
        _ => libc::SIGSEGV,
    };
    linux.unsigned_abs()
}

/// Writes one core per stopped compartment into `dir`; `crashed` gets `signal`.
/// Returns the cores written; each one that could not be, and a directory that cannot
/// be used, is one warning line: the report and the exit status come all the same.
fn write_cores(
    dir: &Path,
    image: &Path,
    dbg: &Debugger,
    crashed: u32,
    signal: Signal,
) -> Vec<PathBuf> {
    let shown = || escape::line(&dir.display().to_string());
    let dir = match CoreDir::open(dir) {
        Ok(dir) => dir,
        Err(e) => {
            crate::stderr_line!(
                "flexos-vmm: warning: cannot write core files to {}: {e}",
                shown()
            );
            return Vec::new();
        }
    };
    let program = image
        .file_name()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy());
    let mut paths = Vec::new();
    for id in 0..dbg.count() {
        // A compartment whose vCPU already ended has no registers left to save.
        let Some(snap) = dbg.snapshot(id) else {
            continue;
        };
        let mut sregs = kvm_sregs::default();
        sregs.cs.selector = u16::try_from(snap.cs).unwrap_or(0);
        sregs.ss.selector = u16::try_from(snap.ss).unwrap_or(0);
        let thread = CoreThread {
            regs: snap.regs,
            sregs,
            fpu: snap.fpu,
            // The peers did nothing wrong: they were only stopped.
            signal: linux_signal(if id == crashed {
                signal
            } else {
                Signal::SIGSTOP
            }),
        };
        let name = &dbg.names[id as usize];
        let owner = CoreOwner {
            program: &program,
            compartment: id,
            name,
        };
        let written = dir.write(&core_name(image, id, name), |file| {
            let stats = coredump::write_core(file, &dbg.mems[id as usize], &thread, &owner)?;
            tracing::debug!(
                compartment = id,
                bytes = stats.bytes,
                memory = stats.memory,
                "core file"
            );
            Ok(())
        });
        match written {
            Ok(placed) => {
                if let Some((taken, what)) = &placed.instead_of {
                    crate::stderr_line!(
                        "flexos-vmm: warning: {} is {what}, not a core file: left it alone and wrote this core to {}",
                        escape::line(&taken.display().to_string()),
                        escape::line(&placed.path.display().to_string())
                    );
                }
                paths.push(placed.path);
            }
            Err(e) => crate::stderr_line!(
                "flexos-vmm: warning: core of compartment {id}: {}",
                escape::line(&e.to_string())
            ),
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_signals_use_linux_numbers() {
        assert_eq!(linux_signal(Signal::SIGSEGV), 11);
        assert_eq!(linux_signal(Signal::SIGSTOP), 19);
        assert_eq!(linux_signal(Signal::SIGSYS), 31);
        assert_eq!(linux_signal(Signal::SIGBUS), 7);
    }

    #[test]
    fn core_names_stay_in_the_directory() {
        assert_eq!(
            core_name(Path::new("x/hello.elf"), 1, "a/../b"),
            "hello.1.a_.._b.core"
        );
    }
}
