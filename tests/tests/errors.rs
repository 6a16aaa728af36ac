//! Errors the monitor reports instead of running a guest (docs/usage.md, exit status and errors): usage
//! mistakes (64), images it cannot boot (65, crafted with `ElfBuilder`), a missing image
//! or a directory (66), KVM unavailable (71, simulated with `FLEXOS_KVM_DEVICE`), and
//! guest arguments that do not fit (64). Each must be exactly one line on stderr,
//! starting with `flexos-vmm: error:` and naming the problem, with nothing on stdout.
//!
//! A crafted image that differs from the bad ones in nothing but the bent field boots
//! (and crashes on its `ud2`), so each rejection is due to the field under test.

use std::ffi::OsString;
use std::path::Path;

use flexos_e2e::{
    elf, hello, image, repo_root, run, run_env, ElfBuilder, Outcome, TempDir, EXIT_BAD_IMAGE,
    EXIT_CRASH, EXIT_KVM, EXIT_NO_INPUT, EXIT_USAGE,
};

/// Asserts an error run: `status`, nothing on stdout, one `flexos-vmm: error:` line on
/// stderr containing every one of `needles`. Returns that line.
#[track_caller]
fn assert_error(out: &Outcome, status: i32, needles: &[&str]) -> String {
    out.assert_status(status);
    assert!(
        out.stdout.is_empty(),
        "an error run must not start the guest\n{out:?}"
    );
    assert!(
        out.stderr.ends_with('\n') && out.stderr.lines().count() == 1,
        "the error should be exactly one line\n{out:?}"
    );
    let line = out.stderr.trim_end_matches('\n');
    assert!(line.starts_with("flexos-vmm: error: "), "{out:?}");
    for needle in needles {
        assert!(
            line.contains(needle),
            "the error should mention {needle:?}\n{out:?}"
        );
    }
    line.to_string()
}

/// Runs the monitor on `img` with `opts` before it.
fn boot(opts: &[&str], img: &Path) -> Outcome {
    let mut args: Vec<OsString> = opts.iter().map(OsString::from).collect();
    args.push(img.into());
    run(args)
}

/// Writes `builder`'s image and runs the monitor on it with `opts`.
fn boot_crafted(opts: &[&str], builder: &ElfBuilder) -> Outcome {
    let dir = TempDir::new("elf");
    let path = builder.write(&dir, "image.elf");
    boot(opts, &path)
}

#[track_caller]
fn assert_bad_image(builder: &ElfBuilder, needles: &[&str]) {
    let out = boot_crafted(&[], builder);
    let mut all = vec!["is not bootable: "];
    all.extend_from_slice(needles);
    assert_error(&out, EXIT_BAD_IMAGE, &all);
}

// --- usage (64) -------------------------------------------------------------------

#[test]
fn mem_zero() {
    let out = boot(&["--mem", "0"], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--mem 0", "at least 8 MiB"]);
}

#[test]
fn mem_too_small() {
    let out = boot(&["--mem", "7"], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--mem 7", "at least 8 MiB"]);
}

#[test]
fn mem_huge() {
    for mem in ["3329", "99999999999", "18446744073709551615"] {
        let out = boot(&["--mem", mem], &image("hello"));
        assert_error(&out, EXIT_USAGE, &[&format!("--mem {mem}"), "at most"]);
    }
}

#[test]
fn mem_not_a_number() {
    for mem in ["abc", "-1", "18446744073709551616", "1.5", ""] {
        let out = boot(&[&format!("--mem={mem}")], &image("hello"));
        assert_error(&out, EXIT_USAGE, &["--mem", mem]);
    }
}

#[test]
fn shared_mem_out_of_range() {
    for mib in ["0", "1025"] {
        let out = boot(&["--shared-mem", mib], &image("hello"));
        assert_error(&out, EXIT_USAGE, &[&format!("--shared-mem {mib}")]);
    }
}

#[test]
fn compartments_zero() {
    let out = boot(&["--compartments", "0"], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--compartments 0"]);
    let out = boot(&["-c", "0"], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--compartments 0"]);
}

#[test]
fn compartments_and_config_conflict() {
    let out = boot(&["-c", "2", "--config", "placement.toml"], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--config"]);
}

#[test]
fn unknown_option() {
    let out = boot(&["--bogus"], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--bogus", "--help"]);
}

#[test]
fn missing_image_argument() {
    let out = run(std::iter::empty::<&str>());
    assert_error(&out, EXIT_USAGE, &["required", "--help"]);
}

#[test]
fn guest_arguments_over_64_kib() {
    let one = "a".repeat(64 * 1024 + 1);
    let out = hello([&one]);
    assert_error(&out, EXIT_USAGE, &["guest arguments", "bytes"]);

    let part = "b".repeat(16 * 1024);
    let out = hello([&part, &part, &part, &part, &part]);
    assert_error(&out, EXIT_USAGE, &["guest arguments", "bytes"]);
}

// --- bad images (65) --------------------------------------------------------------

#[test]
fn crafted_baseline_image_boots() {
    let out = boot_crafted(&[], &ElfBuilder::new());
    out.assert_status(EXIT_CRASH);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr
            .starts_with("flexos-vmm: compartment 0 (app) crashed: invalid opcode (#UD) at "),
        "the crafted image's ud2 should be reported as #UD\n{out:?}"
    );
    out.assert_stderr_contains("rip 0x0000000000100000");
}

#[test]
fn empty_file() {
    let dir = TempDir::new("empty");
    let path = dir.write("empty.elf", b"");
    assert_error(&boot(&[], &path), EXIT_BAD_IMAGE, &["empty", "empty.elf"]);
}

#[test]
fn not_an_elf() {
    let dir = TempDir::new("script");
    let path = dir.write("script.elf", b"#!/bin/sh\necho hi\n");
    assert_error(
        &boot(&[], &path),
        EXIT_BAD_IMAGE,
        &["not an ELF", "script.elf"],
    );
    let path = dir.write("tiny", b"\x7fEL");
    assert_error(&boot(&[], &path), EXIT_BAD_IMAGE, &["not an ELF"]);
}

#[test]
fn truncated_elf_header() {
    let dir = TempDir::new("trunc");
    let bytes = ElfBuilder::new().build();
    let path = dir.write("trunc.elf", &bytes[..40]);
    assert_error(&boot(&[], &path), EXIT_BAD_IMAGE, &["is not bootable"]);
}

#[test]
fn elf32() {
    assert_bad_image(&ElfBuilder::new().class(elf::ELFCLASS32), &["32-bit"]);
    assert_bad_image(
        &ElfBuilder::new()
            .class(elf::ELFCLASS32)
            .machine(elf::EM_386),
        &["32-bit"],
    );
}

#[test]
fn big_endian() {
    let mut b = ElfBuilder::new();
    b.data = elf::ELFDATA2MSB;
    assert_bad_image(&b, &["big-endian"]);
}

#[test]
fn wrong_machine() {
    assert_bad_image(
        &ElfBuilder::new().machine(elf::EM_AARCH64),
        &["aarch64", "x86_64"],
    );
    assert_bad_image(
        &ElfBuilder::new().machine(elf::EM_RISCV),
        &["riscv", "x86_64"],
    );
    assert_bad_image(&ElfBuilder::new().machine(0x1234), &["4660", "x86_64"]);
}

#[test]
fn position_independent() {
    assert_bad_image(
        &ElfBuilder::new().e_type(elf::ET_DYN),
        &["ET_DYN", "ET_EXEC"],
    );
}

#[test]
fn host_executable() {
    // A real host program: dynamically linked, position-independent, or both.
    let ls = Path::new("/bin/ls");
    assert!(ls.is_file(), "this test needs /bin/ls (coreutils)");
    assert_error(
        &boot(&[], ls),
        EXIT_BAD_IMAGE,
        &["/bin/ls", "is not bootable"],
    );
}

#[test]
fn segment_beyond_default_mem() {
    let big = ElfBuilder::new().memsz(64 << 20);
    assert_bad_image(&big, &["segment 0", "outside the memory", "--mem"]);
}

#[test]
fn segment_beyond_small_mem_fits_in_more() {
    let eight = ElfBuilder::new().memsz(8 << 20);
    let out = boot_crafted(&["--mem", "10"], &eight);
    assert_error(
        &out,
        EXIT_BAD_IMAGE,
        &["segment 0", "outside the memory", "--mem"],
    );
    // The same image fits in the default 64 MiB: it boots and hits its ud2.
    boot_crafted(&[], &eight).assert_status(EXIT_CRASH);
}

#[test]
fn segment_below_image_base() {
    assert_bad_image(
        &ElfBuilder::new().vaddr(0x8_0000),
        &["outside the memory", "0x100000"],
    );
}

#[test]
fn entry_outside_executable_code() {
    assert_bad_image(
        &ElfBuilder::new().entry(0x20_0000),
        &["entry point 0x200000"],
    );
    assert_bad_image(
        &ElfBuilder::new().flags(elf::PF_R),
        &["entry point 0x100000", "executable"],
    );
}

#[test]
fn writable_and_executable_segment() {
    assert_bad_image(
        &ElfBuilder::new().flags(elf::PF_R | elf::PF_W | elf::PF_X),
        &["writable and executable"],
    );
}

#[test]
fn file_bytes_without_memory() {
    // A second PT_LOAD with 2 file bytes and p_memsz 0, aimed at the shared region's
    // header: it used to skip validation and still be copied there by the loader.
    let mut bytes = ElfBuilder::new().build();
    bytes[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let ph = 64 + 56;
    bytes[ph..ph + 4].copy_from_slice(&elf::PT_LOAD.to_le_bytes());
    bytes[ph + 4..ph + 8].copy_from_slice(&(elf::PF_R | elf::PF_W).to_le_bytes());
    bytes[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes()); // p_offset
    bytes[ph + 16..ph + 24].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    bytes[ph + 24..ph + 32].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    bytes[ph + 32..ph + 40].copy_from_slice(&2u64.to_le_bytes()); // p_filesz
    bytes[ph + 40..ph + 48].copy_from_slice(&0u64.to_le_bytes()); // p_memsz
    let dir = TempDir::new("memsz0");
    let path = dir.write("image.elf", &bytes);
    assert_error(
        &boot(&[], &path),
        EXIT_BAD_IMAGE,
        &["segment 1: file size 0x2 exceeds its memory size 0x0"],
    );
}

#[test]
fn image_that_is_not_a_regular_file() {
    assert_error(
        &boot(&[], Path::new("/dev/zero")),
        EXIT_BAD_IMAGE,
        &["'/dev/zero' is not bootable: not a regular file"],
    );
}

// --- files (66) -------------------------------------------------------------------

#[test]
fn missing_image() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("no-such-image.elf");
    let out = boot(&[], &path);
    assert_error(
        &out,
        EXIT_NO_INPUT,
        &["not found", "no-such-image.elf", "scripts/build"],
    );
}

#[test]
fn image_is_a_directory() {
    let dir = TempDir::new("dir");
    let out = boot(&[], dir.path());
    let path = dir.path().to_string_lossy();
    assert_error(&out, EXIT_NO_INPUT, &["directory", &path]);
}

// --- KVM (71) ---------------------------------------------------------------------

#[test]
fn kvm_device_missing() {
    let out = run_env(
        [image("hello")],
        [("FLEXOS_KVM_DEVICE", "/nonexistent/kvm")],
    );
    assert_error(
        &out,
        EXIT_KVM,
        &["/nonexistent/kvm", "/dev/kvm", "kvm module"],
    );
}

#[test]
fn kvm_device_not_kvm() {
    // The API-version check answers first: /dev/null knows no KVM ioctl.
    let out = run_env([image("hello")], [("FLEXOS_KVM_DEVICE", "/dev/null")]);
    assert_error(
        &out,
        EXIT_KVM,
        &[
            "/dev/null is not a KVM device (KVM_GET_API_VERSION): Inappropriate ioctl for device",
            "KVM is required",
        ],
    );
}

#[test]
fn gdb_socket_that_cannot_be_created() {
    let out = boot(&["--gdb", "/nonexistent/dir/gdb.sock"], &image("hello"));
    assert_error(
        &out,
        EXIT_USAGE,
        &[
            "cannot listen on /nonexistent/dir/gdb.sock",
            "No such file or directory",
        ],
    );
}

#[test]
fn gdb_address_that_is_empty() {
    let out = boot(&["--gdb", ""], &image("hello"));
    assert_error(&out, EXIT_USAGE, &["--gdb needs HOST:PORT"]);
}

#[test]
fn gdb_address_that_looks_like_host_port_but_is_not() {
    // Names unique to this run, so that nothing left by another run can interfere.
    let pid = std::process::id();
    for addr in [
        format!("999.1.1.1:{pid}"),
        format!("127.0.0.1:{}", 99_999 + pid),
    ] {
        let addr = addr.as_str();
        let out = boot(&["--gdb", addr], &image("hello"));
        assert_error(
            &out,
            EXIT_USAGE,
            &[&format!("--gdb {addr}: not a usable HOST:PORT"), "./"],
        );
        // The monitor runs in the repository root: no socket file may appear there.
        assert!(
            !repo_root().join(addr).exists(),
            "no socket file named {addr} may be created"
        );
    }
}

#[test]
fn gdb_path_that_is_a_regular_file() {
    let dir = TempDir::new("gdb-file");
    let file = dir.write("notes.txt", b"precious");
    let out = boot(&["--gdb", &file.to_string_lossy()], &image("hello"));
    assert_error(
        &out,
        EXIT_USAGE,
        &["notes.txt: refusing to replace it", "not a socket"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

#[test]
fn gdb_socket_is_removed_when_the_run_fails_before_gdb_connects() {
    // The socket is bound before any VM exists; guest arguments that do not fit fail
    // after that, while the compartments are created.
    let dir = TempDir::new("gdb-early");
    let socket = dir.path().join("gdb.sock");
    let big = "a".repeat(64 * 1024 + 1);
    let out = run([
        "--gdb",
        &socket.to_string_lossy(),
        &image("hello").to_string_lossy(),
        "--",
        &big,
    ]);
    assert_error(&out, EXIT_USAGE, &["guest arguments", "bytes"]);
    assert!(!socket.exists(), "the run left its gdb socket behind");
}

#[test]
fn placement_file_that_is_not_a_regular_file() {
    let out = boot(&["--config", "/dev/zero"], &image("hello"));
    assert_error(
        &out,
        EXIT_NO_INPUT,
        &["placement file '/dev/zero' is unreadable: not a regular file"],
    );
}

#[test]
fn placement_file_over_1_mib() {
    let dir = TempDir::new("big-config");
    let mut text = b"# padding\n".repeat(110_000);
    text.extend_from_slice(b"[[compartment]]\nname = \"all\"\ncomponents = [\"app\"]\n");
    let path = dir.write("placement.toml", &text);
    let out = boot(&["--config", &path.to_string_lossy()], &image("hello"));
    assert_error(
        &out,
        EXIT_NO_INPUT,
        &["placement.toml", "larger than 1024 KiB"],
    );
}

#[test]
fn placement_file_missing() {
    let out = boot(
        &["--config", "/nonexistent/placement.toml"],
        &image("hello"),
    );
    assert_error(
        &out,
        EXIT_NO_INPUT,
        &["placement file '/nonexistent/placement.toml' is unreadable"],
    );
}
