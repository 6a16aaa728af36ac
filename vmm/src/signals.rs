//! SIGINT and SIGTERM end a run cleanly: one thread waits for them (every other thread
//! has them blocked), removes the files the run created (a gdb Unix socket), prints one
//! line and exits with 128 + the signal (130, 143). Exiting the process stops every
//! compartment at once: the kernel takes each vCPU thread out of KVM_RUN as the process
//! ends, so no compartment runs on after the line, and none waits on a dead peer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Result, VmmError, EXIT_SIGINT, EXIT_SIGTERM};

/// Files to remove if the run is interrupted.
static CREATED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The exit status after signal `sig` (one of those [`install`] waits for), and its name.
pub fn exit_status(sig: libc::c_int) -> (i32, &'static str) {
    match sig {
        libc::SIGINT => (EXIT_SIGINT, "SIGINT"),
        _ => (EXIT_SIGTERM, "SIGTERM"),
    }
}

/// Blocks SIGINT and SIGTERM in this thread, and so in every thread it starts from now
/// on, and starts the thread that handles them. Call before any other thread starts.
pub fn install() -> Result<()> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid; a null old-mask
    // pointer is allowed.
    let blocked = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if blocked != 0 {
        return Err(VmmError::Signals(std::io::Error::from_raw_os_error(
            blocked,
        )));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            crate::sandbox::enter_thread(crate::sandbox::Thread::Signals);
            let mut sig = 0;
            // SAFETY: `set` and `sig` are valid for the call; sigwait only fails for
            // an invalid set, so the loop ends with a signal from the set.
            while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
            interrupted(sig)
        })
        .map_err(VmmError::Signals)?;
    Ok(())
}

/// Remembers a file this run created, to remove it if the run is interrupted.
pub fn remove_on_interrupt(path: &Path) {
    if let Ok(mut created) = CREATED.lock() {
        created.push(path.to_path_buf());
    }
}

fn interrupted(sig: libc::c_int) -> ! {
    let (status, name) = exit_status(sig);
    // A panicking holder cannot matter here: take the list whatever state it is in.
    let created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    for path in created.iter() {
        let _ = std::fs::remove_file(path);
    }
    crate::stderr_line!("flexos-vmm: stopped by {name}: every compartment stopped");
    std::process::exit(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_shell_convention() {
        assert_eq!(exit_status(libc::SIGINT), (128 + libc::SIGINT, "SIGINT"));
        assert_eq!(exit_status(libc::SIGTERM), (128 + libc::SIGTERM, "SIGTERM"));
    }
}
