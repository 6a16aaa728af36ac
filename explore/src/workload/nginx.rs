//! nginx: FlexOS Figure 6 (bottom)'s workload. Unmodified Nginx (the `nginx` image)
//! serves a stock `wrk -t 1 -c 30 -d S` from a network namespace; the figure is wrk's
//! requests per second (higher is better).
//!
//! `prepare` makes one FAT disk (mkfs.fat, mcopy) holding the pages: a 612-byte
//! `index.html` (the page FlexOS measures) and a 64 KiB `64k.bin`. Each run boots the
//! image under the placement with that disk read-only (nothing a run does can change
//! what the next one serves) and its virtio-net device on a tap in a namespace made
//! with [`flexos_netns`] (removed at the end, on errors and on SIGINT/SIGTERM), waits
//! for the POSIX layer's "listening" line, runs wrk, then stops the guest with
//! SIGTERM (the monitor must exit 143: every compartment stopped cleanly).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flexos_netns::NetNs;
use serde_json::json;

use super::{require_tool, start_server, wait_error, Knobs, Place, Sample, Target, Workload};
use crate::process;
use crate::search::Metric;

/// FlexOS's client: one thread, 30 connections (its Figure 6 runs wrk -t 1 -c 30).
pub const CONNECTIONS: u32 = 30;
const DEFAULT_SECONDS: u32 = 10;
const CLIENT_IP: &str = "10.0.0.1";
pub const SERVER_IP: &str = flexos_netns::GUEST_IP;
const TAP: &str = "fxn0";
/// The monitor's exit status after SIGTERM stopped every compartment.
const STOPPED_BY_SIGTERM: i32 = 143;

/// A page the workload fetches (`--page`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The 612-byte index page.
    Index,
    /// A 64 KiB file.
    K64,
}

impl Page {
    pub fn parse(s: &str) -> Result<Page, String> {
        match s {
            "index" => Ok(Page::Index),
            "64k" => Ok(Page::K64),
            other => Err(format!("--page {other}: want index or 64k")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Page::Index => "index",
            Page::K64 => "64k",
        }
    }
    /// Its path on the server.
    pub fn path(self) -> &'static str {
        match self {
            Page::Index => "/index.html",
            Page::K64 => "/64k.bin",
        }
    }
}

/// The 612-byte index page.
pub fn index_page() -> Vec<u8> {
    let head = b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx on flexos-vmm!</title>\n</head>\n<body>\n<h1>Welcome</h1>\n<p>";
    let tail = b"</p>\n</body>\n</html>\n";
    let mut page = head.to_vec();
    page.resize(612 - tail.len(), b'.');
    page.extend_from_slice(tail);
    page
}

/// Writes the pages into `dir` (index.html, 64k.bin); their paths.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let pages = [
        ("index.html", index_page()),
        (
            "64k.bin",
            (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect(),
        ),
    ];
    pages
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .map(|()| path.clone())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        })
        .collect()
}

pub struct Nginx {
    page: Page,
    seconds: u32,
    netns: Option<NetNs>,
    disk: Option<PathBuf>,
}

impl Nginx {
    pub fn new(knobs: &Knobs) -> Result<Nginx, String> {
        let page = Page::parse(knobs.page.as_deref().unwrap_or("index"))?;
        let seconds = knobs.seconds.unwrap_or(DEFAULT_SECONDS);
        if !(1..=600).contains(&seconds) {
            return Err(format!("--seconds {seconds}: want 1..=600"));
        }
        Ok(Nginx {
            page,
            seconds,
            netns: None,
            disk: None,
        })
    }

    /// The page from now on (a preset's sweep).
    pub fn set_page(&mut self, page: Page) {
        self.page = page;
    }

    fn ns(&self) -> &NetNs {
        self.netns.as_ref().expect("prepare ran")
    }
}

/// `wrk -t 1 -c 30 -d S http://HOST:PORT/PATH` in `ns`: requests per second. Fails
/// on any socket error or non-2xx answer wrk reports.
pub fn wrk(ns: &NetNs, host: &str, page: Page, seconds: u32) -> Result<f64, String> {
    let mut cmd = ns.command("wrk").map_err(|e| e.to_string())?;
    cmd.args(["-t", "1", "-c", &CONNECTIONS.to_string()]);
    cmd.args(["-d", &seconds.to_string(), "--timeout", "10"]);
    cmd.arg(format!("http://{host}:80{}", page.path()));
    let done = process::run(cmd, "wrk", Duration::from_secs(u64::from(seconds) + 60))
        .map_err(wait_error)?;
    let report = done.stdout.join("\n");
    if !done.status.success() {
        return Err(format!("wrk failed ({})\n{}", done.status, done.tail(8)));
    }
    if let Some(bad) = done
        .stdout
        .iter()
        .find(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
    {
        return Err(format!("wrk saw failures: {}\n{report}", bad.trim()));
    }
    requests_per_sec(&report).ok_or_else(|| format!("no Requests/sec in wrk's report:\n{report}"))
}

/// `Requests/sec:  12345.67` from wrk's report.
pub fn requests_per_sec(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A FAT disk image at `img` holding the files at `files` (scripts/mkdisk's steps:
/// mkfs.fat, then mcopy).
pub fn make_disk(img: &Path, files: &[PathBuf]) -> Result<(), String> {
    let run = |mut cmd: Command, what: &str| -> Result<(), String> {
        let done = process::run(
            {
                cmd.stdin(std::process::Stdio::null());
                cmd
            },
            what,
            Duration::from_secs(60),
        )
        .map_err(wait_error)?;
        if done.status.success() {
            Ok(())
        } else {
            Err(format!("{what} failed ({})\n{}", done.status, done.tail(4)))
        }
    };
    let _ = std::fs::remove_file(img);
    let mut mkfs = Command::new("mkfs.fat");
    // The volume scripts/mkdisk makes (FAT16, 4 KiB clusters), 32 MiB.
    mkfs.args(["-C", "-F", "16", "-s", "8", "-n", "NGINX"])
        .arg(img)
        .arg("32768");
    run(mkfs, "mkfs.fat")?;
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let mut mcopy = Command::new("mcopy");
        mcopy.arg("-i").arg(img).arg(f).arg(format!("::/{name}"));
        run(mcopy, "mcopy")?;
    }
    Ok(())
}

impl Workload for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn default_image(&self) -> &'static str {
        "nginx.elf"
    }

    fn metric(&self) -> Metric {
        Metric {
            unit: "req/s",
            higher_is_better: true,
        }
    }

    fn describe(&self) -> String {
        format!(
            "wrk -t 1 -c {CONNECTIONS} -d {} on {} from the guest's Nginx: requests/s",
            self.seconds,
            self.page.path()
        )
    }

    fn prepare(&mut self, target: &Target) -> Result<(), String> {
        require_tool("ip", "iproute2")?;
        require_tool("wrk", "wrk")?;
        require_tool("mkfs.fat", "dosfstools")?;
        require_tool("mcopy", "mtools")?;
        let pages = write_pages(&target.scratch)?;
        let disk = target.scratch.join("nginx-pages.img");
        make_disk(&disk, &pages)?;
        self.disk = Some(disk);
        // Dropped (and so removed, with its tap) by cleanup(), whatever fails next.
        let ns =
            NetNs::with_tap("nginx", TAP, &format!("{CLIENT_IP}/24")).map_err(|e| e.to_string())?;
        self.netns = Some(ns);
        Ok(())
    }

    fn run_sample(&mut self, target: &Target, place: &Place) -> Result<Sample, String> {
        let disk = format!(
            "{},readonly",
            self.disk.as_ref().expect("prepare ran").display()
        );
        let ready = format!("posix: listening on {SERVER_IP}:80");
        let guest = start_server(
            self.ns(),
            target,
            place,
            TAP,
            &["--disk", &disk],
            &ready,
            "Nginx",
        )?;
        // On an error, dropping `guest` kills it.
        let value = wrk(self.ns(), SERVER_IP, self.page, self.seconds)?;
        let done = guest
            .terminate(Duration::from_secs(30))
            .map_err(wait_error)?;
        if done.status.code() != Some(STOPPED_BY_SIGTERM) {
            return Err(format!(
                "flexos-vmm exited with {} after SIGTERM (want {STOPPED_BY_SIGTERM})\n{}",
                done.status,
                done.tail(8)
            ));
        }
        Ok(Sample {
            value,
            detail: json!({"page": self.page.name(), "seconds": self.seconds,
                           "connections": CONNECTIONS}),
        })
    }

    fn cleanup(&mut self) {
        // The tap goes with its namespace; the disk with the scratch directory.
        self.netns = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_report() {
        let report = "Running 10s test @ http://10.0.0.2:80/index.html
  1 threads and 30 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.07ms  245.09us   9.17ms   89.85%
    Req/Sec    28.22k     1.20k   30.24k    78.00%
  280855 requests in 10.00s, 227.64MB read
Requests/sec:  28079.62
Transfer/sec:     22.76MB";
        assert_eq!(requests_per_sec(report), Some(28079.62));
        assert_eq!(requests_per_sec("garbage"), None);
    }

    #[test]
    fn the_index_page_is_612_bytes() {
        assert_eq!(index_page().len(), 612);
        assert!(index_page().ends_with(b"</html>\n"));
    }

    #[test]
    fn rejects_bad_knobs() {
        let bad = |knobs: Knobs| Nginx::new(&knobs).err().unwrap();
        assert_eq!(
            bad(Knobs {
                page: Some("1m".into()),
                ..Knobs::default()
            }),
            "--page 1m: want index or 64k"
        );
        assert_eq!(
            bad(Knobs {
                seconds: Some(0),
                ..Knobs::default()
            }),
            "--seconds 0: want 1..=600"
        );
    }
}
