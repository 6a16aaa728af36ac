//! The volume layer against images made and read by the host's stock tools (dosfstools,
//! mtools; scripts/setup installs them): what scripts/mkdisk makes, the guest can read
//! and write, and what the guest synced, mtype and fsck.fat read back.

use std::path::{Path, PathBuf};
use std::process::Command;

use component_units::MemDisk;
use flexos_vfs::clock::Clock;
use flexos_vfs::volume::Volume;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flexos-units-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/setup)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// scripts/mkdisk's image, with `host.txt` copied in by mcopy.
fn mkdisk(dir: &Path) -> PathBuf {
    let img = dir.join("disk.img");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/mkdisk");
    run(Command::new(script).arg(&img).arg("32"));
    let file = dir.join("host.txt");
    std::fs::write(&file, b"written by mcopy\n").unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(&file)
        .arg("::/host.txt"));
    img
}

/// fsck.fat -n (check only) finds nothing wrong but the dirty bit, which the mounted
/// volume sets and a guest that is killed never clears (mtools ignore it).
fn fsck_clean(img: &Path) {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = format!("{}: ", img.display());
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("fsck.fat ")
                || l.starts_with("Dirty bit is set.")
                || l.trim() == "Automatically removing dirty bit."
                || l.trim() == "Leaving filesystem unchanged."
                || l.starts_with(&summary))
        })
        .collect();
    assert!(complaints.is_empty(), "fsck.fat -n:\n{text}");
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "fsck.fat -n: {}\n{text}",
        out.status
    );
}

fn mount(img: &Path) -> Volume<MemDisk> {
    let bytes = std::fs::read(img).unwrap();
    let mut disk = MemDisk::new(bytes.len() / 512);
    disk.bytes = bytes;
    match Volume::mount(disk) {
        Ok(v) => v,
        Err((code, why)) => panic!("mount: {why} ({code})"),
    }
}

#[test]
fn the_guest_reads_mcopy_and_mtools_read_the_guest() {
    let dir = Scratch::new("tools");
    let img = mkdisk(&dir.0);
    let mut v = mount(&img);

    let id = v.open("host.txt", false);
    assert!(id >= 0, "open host.txt: {id}");
    let mut buf = [0u8; 64];
    assert_eq!(v.read_at(id, 0, &mut buf), 17);
    assert_eq!(&buf[..17], b"written by mcopy\n");

    let name = "from the guest.db-journal";
    let id = v.open(name, true);
    let data: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(v.write_at(id, 0, &data), data.len() as i64);
    assert_eq!(v.sync(id), 0);
    std::fs::write(&img, &v.cache().device().bytes).unwrap();

    let typed = run(Command::new("mtype")
        .arg("-i")
        .arg(&img)
        .arg(format!("::/{name}")));
    assert_eq!(typed.as_bytes(), &data[..]);
    let listing = run(Command::new("mdir").arg("-b").arg("-i").arg(&img).arg("::"));
    assert!(listing.contains(name), "{listing}");
    fsck_clean(&img);
}

#[test]
fn a_delete_reaches_the_disk() {
    let dir = Scratch::new("delete");
    let img = mkdisk(&dir.0);
    let mut v = mount(&img);
    assert_eq!(v.delete("host.txt"), 0);
    std::fs::write(&img, &v.cache().device().bytes).unwrap();
    let listing = run(Command::new("mdir").arg("-b").arg("-i").arg(&img).arg("::"));
    assert!(!listing.contains("host.txt"), "{listing}");
    fsck_clean(&img);
}

/// 2024-02-29 13:37:42 UTC, as the guest's clock would say.
fn leap_day() -> u64 {
    1_709_213_862_000_000_000
}

#[test]
fn files_the_guest_writes_carry_its_clocks_time() {
    let dir = Scratch::new("clock");
    let img = mkdisk(&dir.0);
    let bytes = std::fs::read(&img).unwrap();
    let mut disk = MemDisk::new(bytes.len() / 512);
    disk.bytes = bytes;
    let mut v = Volume::mount_with(disk, Clock::new(leap_day)).ok().unwrap();
    let id = v.open("stamped.txt", true);
    assert_eq!(v.write_at(id, 0, b"now"), 3);
    assert_eq!(v.sync(id), 0);
    std::fs::write(&img, &v.cache().device().bytes).unwrap();
    let listing = run(Command::new("mdir").arg("-i").arg(&img).arg("::"));
    let line = listing
        .lines()
        .find(|l| l.contains("stamped.txt") || l.starts_with("STAMPED"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        line.contains("2024-02-29") && line.contains("13:37"),
        "{line}\n{listing}"
    );
    fsck_clean(&img);
}
