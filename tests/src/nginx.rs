//! Running the `nginx` image (unmodified Nginx on the POSIX layer) against stock clients
//! (curl, wrk): a FAT disk with the files to serve, the guest booted in a [`NetNs`],
//! waited for until it listens, then stopped with SIGTERM when the clients are done.

use std::path::{Path, PathBuf};

pub use crate::background::Background;
use crate::netns::{NetNs, GUEST_IP, TAP};
use crate::{image, mkdisk, require_tool, run_program, Outcome, TempDir};

/// Private memory per compartment for Nginx runs (MiB).
pub const MEM_MIB: &str = "256";

/// A disk of `mib` MiB in `dir` holding `files` (name, bytes) in its root, put there
/// with mcopy as a user would.
#[track_caller]
pub fn disk_with(dir: &TempDir, mib: u32, files: &[(&str, &[u8])]) -> PathBuf {
    require_tool("mcopy", "mtools");
    let img = mkdisk(dir, mib);
    for (name, bytes) in files {
        let local = dir.write(&format!("put-{name}"), bytes);
        run_program(
            "mcopy",
            [
                "-i",
                img.to_str().expect("UTF-8 temp path"),
                local.to_str().expect("UTF-8 temp path"),
                &format!("::/{name}"),
            ],
        )
        .assert_status(0);
    }
    img
}

/// A booted nginx guest.
pub struct Nginx {
    monitor: Background,
    /// `http://GUEST:PORT`.
    pub base: String,
}

/// Boots nginx.elf in `ns` with `compartments`, `disk` (`,readonly` when `readonly`)
/// and guest `args` after `ip=`, and waits until Nginx listens on `port` (the POSIX
/// layer's line; Nginx itself logs nothing at its default level).
#[track_caller]
pub fn start(
    ns: &NetNs,
    compartments: u32,
    disk: &Path,
    readonly: bool,
    port: u16,
    args: &[&str],
) -> Nginx {
    require_tool("curl", "curl");
    let disk_arg = format!(
        "{}{}",
        disk.display(),
        if readonly { ",readonly" } else { "" }
    );
    let tap = format!("tap={TAP}");
    let n = compartments.to_string();
    let elf = image("nginx");
    let ip = format!("ip={GUEST_IP}/24");
    let mut argv = vec![
        "-m",
        MEM_MIB,
        "--compartments",
        &n,
        "--net",
        &tap,
        "--disk",
        &disk_arg,
        elf.to_str().expect("UTF-8 image path"),
        "--",
        &ip,
    ];
    argv.extend_from_slice(args);
    let monitor = Background::start_in(ns.inner(), &argv, false);
    let ready = format!("posix: listening on {GUEST_IP}:{port}");
    // In several compartments the line carries its compartment's prefix (`[app] `).
    monitor.wait_until(|l| l.ends_with(&ready), &ready);
    Nginx {
        monitor,
        base: format!("http://{GUEST_IP}:{port}"),
    }
}

impl Nginx {
    /// Stops the guest with SIGTERM; the monitor's exit status (143 when it stopped
    /// cleanly), its stdout lines after the listen line, and its stderr.
    pub fn stop(self) -> (i32, Vec<String>, String) {
        self.monitor.signal("TERM")
    }

    /// `curl -sS ARGS... URL` for `path` on this server, run in the namespace.
    #[track_caller]
    pub fn curl(&self, ns: &NetNs, path: &str, args: &[&str]) -> Outcome {
        let url = format!("{}{path}", self.base);
        let mut all = vec!["-sS", "--max-time", "60"];
        all.extend_from_slice(args);
        all.push(&url);
        ns.run_program("curl", all)
    }

    /// The status code of a GET of `path` (curl's `%{http_code}`).
    #[track_caller]
    pub fn status_of(&self, ns: &NetNs, path: &str) -> String {
        let out = self.curl(ns, path, &["-o", "/dev/null", "-w", "%{http_code}"]);
        out.assert_status(0);
        out.stdout
    }
}
