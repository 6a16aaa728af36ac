//! sqlite: FlexOS Figure 10's workload, N autocommit INSERTs (5000 by default) into a
//! database on a virtio-blk disk (each run on a fresh copy of one freshly formatted FAT
//! disk), in memory (`mem`) or on vfs's RAM file system (`ramfs`), journal DELETE or
//! WAL. Figure: seconds for the inserts, as the guest timed them (lower is better).
//!
//! A figure is never one of a run that did not store its data: after a run on a disk
//! the database is copied out with mtools and the host's sqlite3 checks its integrity
//! and counts its rows; a ramfs run counts them itself after the timed inserts.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{bench_line, field, require_tool, run_vmm, Knobs, Place, Sample, Target, Workload};
use crate::process;
use crate::search::Metric;

const DEFAULT_INSERTS: u32 = 5000;
/// The disk: 64 MiB, FAT16 with 4 KiB clusters (as scripts/mkdisk makes it).
const DISK_KIB: u32 = 64 * 1024;

/// Where the guest's database lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A FAT disk through vfs and blkdev.
    Disk,
    /// SQLite's in-memory database (`mem`).
    Mem,
    /// vfs's RAM file system (`ramfs`), FlexOS's own setup.
    Ramfs,
}

pub struct Sqlite {
    inserts: u32,
    journal: Option<String>,
    storage: Storage,
    template: Option<PathBuf>,
}

impl Sqlite {
    pub fn new(knobs: &Knobs) -> Result<Sqlite, String> {
        let inserts = knobs.inserts.unwrap_or(DEFAULT_INSERTS);
        if inserts == 0 {
            return Err("--inserts 0: want at least 1".into());
        }
        Ok(Sqlite {
            inserts,
            journal: None,
            storage: Storage::Disk,
            template: None,
        })
    }

    /// The journal mode (`delete`, `wal`; the guest's default, DELETE, if never set).
    pub fn journal(mut self, journal: &str) -> Sqlite {
        self.journal = Some(journal.to_string());
        self
    }

    pub fn storage(mut self, storage: Storage) -> Sqlite {
        self.storage = storage;
        self
    }

    /// Rows in `bench.db` on the FAT image `disk` (mtools, then the host's sqlite3,
    /// which also checks the database's integrity).
    fn rows_on_disk(&self, target: &Target, disk: &std::path::Path) -> Result<u64, String> {
        let copy = target.scratch.join("copied.db");
        let _ = std::fs::remove_file(&copy);
        let mut mcopy = Command::new("mcopy");
        mcopy
            .args(["-o", "-i"])
            .arg(disk)
            .arg("::/bench.db")
            .arg(&copy);
        let done =
            process::run(mcopy, "mcopy", Duration::from_secs(60)).map_err(|e| e.to_string())?;
        if !done.status.success() {
            return Err(format!("mcopy of bench.db failed\n{}", done.tail(5)));
        }
        let mut check = Command::new("sqlite3");
        check
            .arg("-batch")
            .arg(&copy)
            .arg("PRAGMA integrity_check; SELECT count(*) FROM tab;");
        let done =
            process::run(check, "sqlite3", Duration::from_secs(60)).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&copy);
        match done.stdout.as_slice() {
            [ok, count] if ok == "ok" => count
                .trim()
                .parse()
                .map_err(|_| format!("sqlite3 counted {count:?} rows")),
            other => Err(format!(
                "bench.db on the disk fails its check: {other:?}\n{}",
                done.tail(5)
            )),
        }
    }
}

impl Workload for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn default_image(&self) -> &'static str {
        "sqlite.elf"
    }

    fn metric(&self) -> Metric {
        Metric {
            unit: "s",
            higher_is_better: false,
        }
    }

    fn describe(&self) -> String {
        format!(
            "sqlite bench n={}: autocommit INSERTs on a fresh 64 MiB FAT disk, seconds",
            self.inserts
        )
    }

    fn prepare(&mut self, target: &Target) -> Result<(), String> {
        if self.storage != Storage::Disk {
            return Ok(());
        }
        require_tool("mkfs.fat", "dosfstools")?;
        require_tool("mcopy", "mtools")?;
        require_tool("sqlite3", "sqlite3")?;
        let template = target.scratch.join("template.img");
        // mkfs.fat -C refuses an existing file (a template of an earlier table).
        let _ = std::fs::remove_file(&template);
        let mut mkfs = Command::new("mkfs.fat");
        mkfs.args(["-C", "-F", "16", "-s", "8", "-n", "FLEXOS"])
            .arg(&template)
            .arg(DISK_KIB.to_string());
        let done =
            process::run(mkfs, "mkfs.fat", Duration::from_secs(60)).map_err(|e| e.to_string())?;
        if !done.status.success() {
            return Err(format!(
                "mkfs.fat failed ({})\n{}",
                done.status,
                done.tail(5)
            ));
        }
        self.template = Some(template);
        Ok(())
    }

    fn run_sample(&mut self, target: &Target, place: &Place) -> Result<Sample, String> {
        let mut args = vec!["bench".to_string(), format!("n={}", self.inserts)];
        if let Some(j) = &self.journal {
            args.push(format!("journal={j}"));
        }
        // ~1.5 ms per insert in the slowest placements measured here; generous.
        let timeout = Duration::from_secs(60 + u64::from(self.inserts) / 100);
        let disk = target.scratch.join("disk.img");
        let done = match self.storage {
            Storage::Disk => {
                let template = self.template.as_ref().expect("prepare ran");
                std::fs::copy(template, &disk).map_err(|e| {
                    format!("cannot copy the disk template to {}: {e}", disk.display())
                })?;
                let disk_arg = disk.to_str().ok_or("the scratch path is not UTF-8")?;
                run_vmm(
                    target.vmm_command(place, &["--disk", disk_arg], &args),
                    timeout,
                )
            }
            Storage::Mem => {
                args.push("mem".into());
                run_vmm(target.vmm_command(place, &[], &args), timeout)
            }
            Storage::Ramfs => {
                // The files go with the run: it counts its rows, after the timed inserts.
                args.extend(["ramfs".into(), "sql=SELECT count(*) FROM tab".into()]);
                run_vmm(target.vmm_command(place, &[], &args), timeout)
            }
        };
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&disk);
                return Err(e);
            }
        };
        let mut stored = None;
        if self.storage == Storage::Disk {
            let rows = self.rows_on_disk(target, &disk);
            let _ = std::fs::remove_file(&disk);
            stored = Some(rows?);
        }
        if self.storage == Storage::Ramfs {
            let last = done.stdout.last().map(String::as_str).unwrap_or("");
            // In several compartments the console prefixes each line with `[app] `.
            let count = match last.split_once("] ") {
                Some((_, c)) if last.starts_with('[') => c,
                _ => last,
            };
            stored = count.trim().parse().ok();
        }
        if stored.is_some_and(|n| n != u64::from(self.inserts))
            || (self.storage != Storage::Mem && stored.is_none())
        {
            return Err(format!(
                "the database holds {stored:?} rows, not {}\n{}",
                self.inserts,
                done.tail(8)
            ));
        }
        let line = bench_line(&done.stdout, "sqlite")
            .ok_or_else(|| format!("sqlite printed no result\n{}", done.tail(8)))?;
        let inserted = field(&line, "inserts")?;
        if inserted != f64::from(self.inserts) {
            return Err(format!(
                "asked for {} inserts, the guest made {inserted}",
                self.inserts
            ));
        }
        if let Some(j) = &self.journal {
            if line.get("journal").and_then(|v| v.as_str()) != Some(j.as_str()) {
                return Err(format!("asked for journal {j}, the guest ran {line}"));
            }
        }
        let mut detail = line;
        if let Some(rows) = stored {
            detail["rows_stored"] = rows.into();
        }
        Ok(Sample {
            value: field(&detail, "seconds")?,
            detail,
        })
    }
}
