//! `fscheck`: files on the disk (`--disk PATH`, a FAT volume) through the `vfs` and
//! `blkdev` components, for end-to-end checks with the host's mtools; or, with the guest
//! argument `ramfs`, in the vfs component's RAM file system (its size `vfs.ramfs=MiB`;
//! both are settings for vfs, not steps). Runs its other guest arguments in order:
//!
//! - `write=NAME:TEXT`: creates or empties NAME, writes TEXT, syncs; prints
//!   `fscheck: wrote N bytes to NAME`;
//! - `read=NAME`: prints `fscheck: read NAME (N bytes): TEXT`;
//! - `rm=NAME`: deletes NAME (durable when it returns); prints `fscheck: deleted NAME`;
//! - `ls`: prints `fscheck: ls`, then one `NAME<TAB>SIZE` line per file of the root
//!   directory.
//!
//! A failed step prints `fscheck: STEP failed: REASON (code N)` and exits 1; bad
//! arguments (and no step at all, or `vfs.ramfs=` without `ramfs`) exit 2. Splits: 1 = everything; 2 = {app} | {vfs, blkdev};
//! 3 = {app} | {vfs} | {blkdev}.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;

use flexos_kernel::gate;
use flexos_kernel::rpc::SharedBuf;
use flexos_kernel::{Args, println};
use flexos_vfs::Files;
use flexos_vfs::codes::describe;
use flexos_vfs::ramfs::{CAP_KEY, RAMFS_ARG};

flexos_kernel::main!(main);
flexos_vfs::app!();

const USAGE: &str =
    "usage: fscheck [ramfs [vfs.ramfs=MiB]] [write=NAME:TEXT | read=NAME | rm=NAME | ls]...";
const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;

/// A failed step: what it was and the code.
struct Failed(String, i64);

/// `value` if it is not an error code, else the failure of `step`.
fn ok(step: &str, value: Result<i64, flexos_kernel::rpc::GateError>) -> Result<i64, Failed> {
    match value {
        Ok(v) if v >= 0 => Ok(v),
        Ok(code) => Err(Failed(String::from(step), code)),
        Err(e) => {
            println!("fscheck: {step}: gate call failed: {e}");
            Err(Failed(String::from(step), flexos_vfs::codes::E_IO))
        }
    }
}

/// A shared buffer for vfs holding `bytes`.
fn shared(bytes: &[u8]) -> Result<SharedBuf, Failed> {
    let fail = || {
        Failed(
            String::from("allocating a shared buffer"),
            flexos_vfs::codes::E_IO,
        )
    };
    let buf = gate::shared_alloc(VFS, bytes.len().max(1)).ok_or_else(fail)?;
    gate::bytes(buf)
        .and_then(|b| b.write(0, bytes))
        .map_err(|_| fail())?;
    buf.slice(0, bytes.len() as u32).ok_or_else(fail)
}

fn write(files: &Files, name: &str, text: &str) -> Result<(), Failed> {
    let name_buf = shared(name.as_bytes())?;
    let id = ok("open", files.open(name_buf, true))?;
    ok("truncate", files.truncate(id, 0))?;
    let data = shared(text.as_bytes())?;
    let n = if text.is_empty() {
        0
    } else {
        ok("write", files.write_at(id, 0, data))?
    };
    ok("sync", files.sync(id))?;
    ok("close", files.close(id))?;
    let _ = (gate::shared_free(name_buf), gate::shared_free(data));
    println!("fscheck: wrote {n} bytes to {name}");
    Ok(())
}

fn read(files: &Files, name: &str) -> Result<(), Failed> {
    let name_buf = shared(name.as_bytes())?;
    let id = ok("open", files.open(name_buf, false))?;
    let size = ok("size", files.size(id))? as usize;
    let buf = shared(&vec![0; size])?;
    let n = if size == 0 {
        0
    } else {
        ok("read", files.read_at(id, 0, buf))? as usize
    };
    let mut text = vec![0u8; n];
    gate::bytes(buf)
        .and_then(|b| b.read(0, &mut text))
        .map_err(|_| Failed(String::from("read"), flexos_vfs::codes::E_BAD_BUFFER))?;
    ok("close", files.close(id))?;
    let _ = (gate::shared_free(name_buf), gate::shared_free(buf));
    println!(
        "fscheck: read {name} ({n} bytes): {}",
        String::from_utf8_lossy(&text)
    );
    Ok(())
}

fn remove(files: &Files, name: &str) -> Result<(), Failed> {
    let name_buf = shared(name.as_bytes())?;
    ok("delete", files.delete(name_buf))?;
    let _ = gate::shared_free(name_buf);
    println!("fscheck: deleted {name}");
    Ok(())
}

fn list(files: &Files) -> Result<(), Failed> {
    let mut len = 4096;
    loop {
        let buf = shared(&vec![0; len])?;
        let total = ok("ls", files.list(buf))? as usize;
        if total <= len {
            let mut text = vec![0u8; total];
            let _ = gate::bytes(buf).and_then(|b| b.read(0, &mut text));
            let _ = gate::shared_free(buf);
            println!("fscheck: ls");
            for line in String::from_utf8_lossy(&text).lines() {
                println!("{line}");
            }
            return Ok(());
        }
        let _ = gate::shared_free(buf);
        len = total;
    }
}

/// Whether `arg` is the vfs component's `vfs.ramfs=` setting (vfs checks its value).
fn is_cap(arg: &str) -> bool {
    arg.strip_prefix(CAP_KEY)
        .is_some_and(|rest| rest.starts_with('='))
}

fn main(args: &Args) -> i32 {
    let setting = |arg: &str| arg == RAMFS_ARG || is_cap(arg);
    if args.iter().all(setting) {
        println!("{USAGE}");
        return EXIT_USAGE;
    }
    if args.iter().any(is_cap) && !args.iter().any(|arg| arg == RAMFS_ARG) {
        println!("fscheck: {CAP_KEY}= needs ramfs; {USAGE}");
        return EXIT_USAGE;
    }
    let files = files();
    for arg in args.iter().filter(|arg| !setting(arg)) {
        let done = if let Some(spec) = arg.strip_prefix("write=") {
            let Some((name, text)) = spec.split_once(':') else {
                println!("fscheck: bad argument '{arg}': want write=NAME:TEXT");
                return EXIT_USAGE;
            };
            write(&files, name, text)
        } else if let Some(name) = arg.strip_prefix("read=") {
            read(&files, name)
        } else if let Some(name) = arg.strip_prefix("rm=") {
            remove(&files, name)
        } else if arg == "ls" {
            list(&files)
        } else {
            println!("fscheck: unknown argument '{arg}'; {USAGE}");
            return EXIT_USAGE;
        };
        if let Err(Failed(step, code)) = done {
            println!("fscheck: {step} failed: {} (code {code})", describe(code));
            return EXIT_FAILED;
        }
    }
    0
}
