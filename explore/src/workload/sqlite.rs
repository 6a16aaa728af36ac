//! sqlite: FlexOS Figure 10's workload, N autocommit INSERTs (5000 by default) into a
//! database on a virtio-blk disk, each run on a fresh copy of one freshly formatted FAT
//! disk. Figure: seconds for the inserts, as the guest timed them (lower is better).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{bench_line, field, require_tool, run_vmm, Knobs, Target, Workload};
use crate::process;
use crate::search::Metric;

const DEFAULT_INSERTS: u32 = 5000;
/// The disk: 64 MiB, FAT16 with 4 KiB clusters (as scripts/mkdisk makes it).
const DISK_KIB: u32 = 64 * 1024;

pub struct Sqlite {
    inserts: u32,
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
            template: None,
        })
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
        require_tool("mkfs.fat", "dosfstools")?;
        let template = target.scratch.join("template.img");
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

    fn run(&mut self, target: &Target, config: &Path) -> Result<f64, String> {
        let template = self.template.as_ref().expect("prepare ran");
        let disk = target.scratch.join("disk.img");
        std::fs::copy(template, &disk)
            .map_err(|e| format!("cannot copy the disk template to {}: {e}", disk.display()))?;
        let disk_arg = disk.to_str().ok_or("the scratch path is not UTF-8")?;
        let args = vec!["bench".to_string(), format!("n={}", self.inserts)];
        // ~1.5 ms per insert in the slowest placements measured here; generous.
        let timeout = Duration::from_secs(60 + u64::from(self.inserts) / 100);
        let done = run_vmm(
            target.vmm_command(config, &["--disk", disk_arg], &args),
            timeout,
        )?;
        let _ = std::fs::remove_file(&disk);
        let line = bench_line(&done.stdout, "sqlite")
            .ok_or_else(|| format!("sqlite printed no result\n{}", done.tail(8)))?;
        let inserted = field(&line, "inserts")?;
        if inserted != f64::from(self.inserts) {
            return Err(format!(
                "asked for {} inserts, the guest made {inserted}",
                self.inserts
            ));
        }
        field(&line, "seconds")
    }
}
