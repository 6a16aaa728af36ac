//! `--disk`: the command line's errors (66 for a missing file, 64 for an unusable size,
//! flag or image), and the device's MMIO window end to end with crafted guests (no
//! guest kernel): the owner's reads and writes reach the virtio-mmio transport, and any
//! other compartment's access is an isolation violation that names the window.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use flexos_e2e::crafted::{
    blk_one_request as one_request, component_table, image as crafted, Asm, Data,
    BOOT_COMPARTMENT_ID, BOOT_DEVICE0_BASE, BOOT_DEVICE0_KIND, BOOT_DEVICE0_SIZE,
    BOOT_DEVICE_COUNT,
};
use flexos_e2e::{image, run, run_env, Outcome, TempDir, EXIT_CRASH, EXIT_NO_INPUT, EXIT_USAGE};

/// The first device window (flexos_abi::MMIO_BASE).
const MMIO_BASE: u64 = 0xD000_0000;
/// virtio device id of a block device, and the virtio-mmio "virt" magic.
const DEVICE_BLOCK: u32 = 2;
const VIRTIO_MAGIC: u32 = 0x7472_6976;

/// Runs the monitor with `args`.
fn vmm(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Outcome {
    run(args.iter().map(|a| OsString::from(a.as_ref())))
}

/// Asserts an error run: `status`, nothing on stdout, exactly one
/// `flexos-vmm: error:` line on stderr containing every needle.
#[track_caller]
fn assert_error(out: &Outcome, status: i32, needles: &[&str]) {
    out.assert_status(status);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line\n{out:?}");
    assert!(out.stderr.starts_with("flexos-vmm: error: "), "{out:?}");
    for needle in needles {
        assert!(out.stderr.contains(needle), "{needle:?}\n{out:?}");
    }
}

/// A file of `len` bytes in `dir`.
fn disk(dir: &TempDir, len: usize) -> PathBuf {
    dir.write("disk.img", &vec![0u8; len])
}

#[test]
fn a_missing_disk_file_exits_66() {
    let dir = TempDir::new("disk");
    let missing = dir.path().join("nope.img");
    let out = vmm(&[&"--disk", &missing, &image("hello")]);
    assert_error(&out, EXIT_NO_INPUT, &["--disk", "nope.img", "No such file"]);
}

#[test]
fn a_directory_is_not_a_disk() {
    let dir = TempDir::new("disk");
    for arg in [
        dir.path().display().to_string(),
        format!("{},readonly", dir.path().display()),
    ] {
        let out = vmm(&[&"--disk", &arg, &image("hello")]);
        let path = dir.path().display().to_string();
        assert_error(&out, EXIT_NO_INPUT, &["--disk: ", &path]);
    }
}

#[test]
fn a_disk_whose_size_is_not_whole_sectors_exits_64() {
    let dir = TempDir::new("disk");
    let out = vmm(&[&"--disk", &disk(&dir, 1000), &image("hello")]);
    assert_error(
        &out,
        EXIT_USAGE,
        &["disk.img", "1000 bytes", "multiple of 512"],
    );
}

#[test]
fn an_unknown_disk_flag_exits_64() {
    let dir = TempDir::new("disk");
    let arg = format!("{},rw", disk(&dir, 4096).display());
    let out = vmm(&[&"--disk", &arg, &image("hello")]);
    assert_error(
        &out,
        EXIT_USAGE,
        &["--disk", "unknown flag \"rw\"", "readonly"],
    );
}

#[test]
fn an_image_without_a_blkdev_component_cannot_take_a_disk() {
    let dir = TempDir::new("disk");
    let out = vmm(&[&"--disk", &disk(&dir, 4096), &image("gatebench")]);
    assert_error(
        &out,
        EXIT_USAGE,
        &[
            "--disk needs a `blkdev` component",
            "which has: bench, callee, relay1, relay2",
        ],
    );
}

fn boot_with_disk(opts: &[&str], img: &Path, disk: &Path) -> Outcome {
    let mut args: Vec<OsString> = opts.iter().map(OsString::from).collect();
    args.extend(["--disk".into(), disk.into(), img.into()]);
    run(args)
}

#[test]
fn the_owner_reaches_the_transport_through_its_window() {
    // The window comes from the boot info; the registers answer as a virtio-mmio v2
    // block device; a status write is kept. Exit code: DeviceID * 10 + Status = 23.
    let code = Asm::default()
        .expect_boot_u32(BOOT_DEVICE_COUNT, 1)
        .expect_boot_u32(BOOT_DEVICE0_KIND, DEVICE_BLOCK)
        .expect_boot_u32(BOOT_DEVICE0_SIZE, 0x1000)
        .rbx_from_boot(BOOT_DEVICE0_BASE)
        .read_reg(0x000)
        .bytes(&[0x3d])
        .bytes(&VIRTIO_MAGIC.to_le_bytes()) // cmp eax, "virt"
        .or_crash()
        .read_reg(0x04)
        .bytes(&[0x83, 0xf8, 0x02]) // cmp eax, 2 (version)
        .or_crash()
        .write_reg(0x70, 1) // ACKNOWLEDGE
        .write_reg(0x70, 3) // ... | DRIVER
        .read_reg(0x08) // DeviceID
        .bytes(&[0x6b, 0xc8, 0x0a]) // imul ecx, eax, 10
        .read_reg(0x70) // Status
        .bytes(&[0x01, 0xc8]) // add eax, ecx
        .exit_with_rax();
    let dir = TempDir::new("mmio");
    let img = crafted(&dir, code, component_table(&["blkdev"], &["blk"], &[0]));
    let out = boot_with_disk(&[], &img, &disk(&dir, 4096));
    out.assert_status(23).assert_stderr_empty();
}

#[test]
fn the_window_is_not_the_owners_beyond_its_end() {
    // The page after the window belongs to no device: the owner's read there is a
    // violation like any access to unbacked memory.
    let code = Asm::default()
        .rbx(MMIO_BASE + 0x1000)
        .read_reg(0)
        .bytes(&[0x0f, 0x0b]);
    let dir = TempDir::new("mmio");
    let img = crafted(&dir, code, component_table(&["blkdev"], &["blk"], &[0]));
    let out = boot_with_disk(&[], &img, &disk(&dir, 4096));
    out.assert_status(EXIT_CRASH);
    let headline = out.stderr.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with(
            "flexos-vmm: compartment 0 (blk) violated isolation: read of 4 bytes at guest-physical 0xd0001000, which is "
        ),
        "{out:?}"
    );
}

/// Runs a 2-compartment guest whose compartment 1 (fs) hosts blkdev and owns the disk
/// (it waits), while compartment 0 (app), which owns no device, runs `access` with rbx
/// at the window; returns the first line of the crash report.
fn non_owner_access(access: Asm) -> String {
    let code = Asm::default()
        .bytes(&[0x83, 0x7f, BOOT_COMPARTMENT_ID as u8, 0x00]) // cmp dword [rdi+16], 0
        .bytes(&[0x74, 0x02, 0xeb, 0xfe]) // je +2; jmp $ (the owner spins)
        .expect_boot_u32(BOOT_DEVICE_COUNT, 0)
        .rbx(MMIO_BASE)
        .bytes(&access.0)
        .bytes(&[0x0f, 0x0b]);
    let dir = TempDir::new("mmio");
    let table = component_table(&["app", "blkdev"], &["app", "fs"], &[0, 1]);
    let img = crafted(&dir, code, table);
    let listing = run([OsString::from("--list-components"), img.clone().into()]);
    listing.assert_status(0);
    assert!(listing.stdout.contains("blkdev"), "{listing:?}");

    let out = boot_with_disk(&["--compartments", "2"], &img, &disk(&dir, 4096));
    out.assert_status(EXIT_CRASH);
    out.stderr.lines().next().unwrap_or_default().to_string()
}

#[test]
fn another_compartment_reading_the_window_violates_isolation() {
    let headline = non_owner_access(Asm::default().read_reg(0));
    assert!(
        headline.starts_with(
            "flexos-vmm: compartment 0 (app) violated isolation: read of 4 bytes at guest-physical 0xd0000000, which is the MMIO window of the block device owned by compartment 1 (fs), at "
        ),
        "{headline}"
    );
}

#[test]
fn another_compartment_cannot_kick_the_queue() {
    // The ioeventfd is the owner's VM's only: here the kick exits and is a violation.
    let headline = non_owner_access(Asm::default().write_reg(0x50, 0));
    assert!(
        headline.starts_with(
            "flexos-vmm: compartment 0 (app) violated isolation: write of 4 bytes at guest-physical 0xd0000050, which is the MMIO window of the block device owned by compartment 1 (fs), at "
        ),
        "{headline}"
    );
}

/// Boots `code` (one component, `blkdev`) with a 4 KiB disk of 7s (`,readonly` if
/// asked), the monitor's register accesses traced; returns the run and the disk's
/// contents afterwards.
fn request_run(code: Asm, readonly: bool) -> (Outcome, Vec<u8>) {
    let dir = TempDir::new("blk");
    let img = crafted(&dir, code, component_table(&["blkdev"], &["blk"], &[0]));
    let disk = dir.write("disk.img", &[7u8; 4096]);
    let mut arg = OsString::from(&disk);
    if readonly {
        arg.push(",readonly");
    }
    let out = run_env(
        [OsString::from("--disk"), arg, img.into()],
        [("RUST_LOG", "flexos_vmm=trace")],
    );
    let after = std::fs::read(&disk).unwrap();
    (out, after)
}

/// The run's stderr without the monitor's trace lines.
fn without_traces(out: &Outcome) -> String {
    out.stderr
        .lines()
        .filter(|l| !l.contains("flexos_vmm"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Asserts a clean exit with `code` and no output but traces.
#[track_caller]
fn assert_exit(out: &Outcome, code: i32) {
    out.assert_status(code);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(without_traces(out), "", "{out:?}");
}

#[test]
fn a_read_request_is_answered_by_the_device_thread() {
    let (out, disk) = request_run(one_request(0, Data::Heap), false);
    // Data byte 7 from the disk, status 0 (VIRTIO_BLK_S_OK).
    assert_exit(&out, 7);
    assert_eq!(disk, [7u8; 4096]);
    // Register accesses exit to the monitor; the kick (QueueNotify, offset 0x50) does
    // not: KVM signals the device thread's ioeventfd itself.
    out.assert_stderr_contains("device register write offset=112 len=4");
    assert!(
        !out.stderr.contains("device register write offset=80 "),
        "the kick reached the monitor: no ioeventfd\n{out:?}"
    );
}

#[test]
fn a_write_request_reaches_the_disk_file_unless_it_is_readonly() {
    // The heap's 512 zero bytes to sector 0.
    let (out, disk) = request_run(one_request(1, Data::Heap), false);
    assert_exit(&out, 0);
    assert_eq!(&disk[..512], &[0u8; 512][..]);
    assert_eq!(&disk[512..], &[7u8; 4096 - 512][..]);
    // Read-only: VIRTIO_BLK_S_IOERR, and the file is untouched.
    let (out, disk) = request_run(one_request(1, Data::Heap), true);
    assert_exit(&out, 32);
    assert_eq!(disk, [7u8; 4096]);
}

#[test]
fn the_device_cannot_write_the_owners_page_tables() {
    // 0x10000 is the first page-table page: outside the device's memory, so the
    // request fails with VIRTIO_BLK_S_IOERR (1) and the guest runs on to report it.
    let (out, _) = request_run(one_request(0, Data::Low(0x1_0000)), false);
    assert_exit(&out, 32);
}

#[test]
fn the_device_cannot_read_the_owners_image() {
    // A write request whose data is the image's code: refused (IOERR), and the disk
    // keeps its contents.
    let (out, disk) = request_run(one_request(1, Data::Low(0x10_0000)), false);
    assert_exit(&out, 32);
    assert_eq!(disk, [7u8; 4096]);
}

/// What a guest does once the device is busy with its huge queue.
enum Then {
    /// Crashes (ud2): the run must end with the report.
    Crash,
    /// Resets the device (status 0), then exits 5.
    Reset,
    /// Nothing: the kick is its last instruction (the device runs in its vCPU
    /// thread, which answers the kick before the guest goes on).
    Wait,
}

/// A guest that queues 256 reads of 3.9 GiB each (one chain, header + 250 data
/// descriptors of 16 MiB over the same heap buffer + status, listed 256 times in the
/// available ring) on an 8 GiB sparse disk, waits until the device has started on the
/// first (the buffer's 0xff marker is overwritten), then crashes or resets the device.
/// Before the fix the device thread answered the whole queue (~1 TB) before it looked
/// at its stop flag. Heap layout: descriptors 0x0000, available ring 0x1000, used ring
/// 0x2000, header 0x3000, status 0x3100, data 0x10000.
fn huge_queue_then(then: Then) -> Asm {
    // Built with GNU as from:
    //     mov rsi, [rdi+56]; mov rbx, [rdi+192]
    //     lea rax, [rsi+0x3000]; mov [rsi], rax
    //     mov dword ptr [rsi+8], 16; mov dword ptr [rsi+12], 0x10001
    //     lea rax, [rsi+0x10000]; mov byte ptr [rax], 0xff; mov ecx, 1
    // 1:  mov edx, ecx; shl edx, 4; mov [rsi+rdx], rax
    //     mov dword ptr [rsi+rdx+8], 0x1000000
    //     lea r8d, [rcx+1]; shl r8d, 16; or r8d, 3; mov [rsi+rdx+12], r8d
    //     inc ecx; cmp ecx, 251; jne 1b
    //     lea rax, [rsi+0x3100]; mov [rsi+0xfb0], rax
    //     mov dword ptr [rsi+0xfb8], 1; mov dword ptr [rsi+0xfbc], 2
    const DESCRIPTORS: &str = "488b7738488b9fc0000000488d8600300000488906c7460810000000\
        c7460c01000100488d8600000100c600ffb90100000089cac1e20448890416c744160800000001\
        448d410141c1e0104183c803448944160cffc181f9fb00000075d4488d8600310000488986b00f\
        0000c786b80f000001000000c786bc0f000002000000";
    let hex: Vec<u8> = (0..DESCRIPTORS.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&DESCRIPTORS[i..i + 2], 16).unwrap())
        .collect();
    let queue = Asm::default()
        .bytes(&hex)
        .write_reg(0x70, 1) // ACKNOWLEDGE
        .write_reg(0x70, 3) // DRIVER
        .write_reg(0x24, 1) // DriverFeaturesSel: bits 32..
        .write_reg(0x20, 1) // VIRTIO_F_VERSION_1
        .write_reg(0x70, 11) // FEATURES_OK
        .write_reg(0x30, 0) // QueueSel
        .write_reg(0x38, 256) // QueueNum
        .write_reg_heap(0x80, 0x0000)
        .write_reg_heap(0x90, 0x1000)
        .write_reg_heap(0xa0, 0x2000)
        .write_reg(0x44, 1) // QueueReady
        .write_reg(0x70, 15) // DRIVER_OK
        .read_reg(0x70)
        .expect_eax(15)
        .heap_u16(0x1002, 256) // avail.idx: 256 requests
        .write_reg(0x50, 0); // QueueNotify(0)
    if let Then::Wait = then {
        return queue.bytes(&[0xeb, 0xfe]); // jmp $
    }
    // pause; movzx eax, byte [rsi+0x10000]; test eax, eax; jne back: the device is
    // writing the first request's data.
    let code = queue
        .bytes(&[0xf3, 0x90, 0x0f, 0xb6, 0x86, 0x00, 0x00, 0x01, 0x00])
        .bytes(&[0x85, 0xc0, 0x75, 0xf3]);
    match then {
        Then::Crash => code.bytes(&[0x0f, 0x0b]),
        Then::Reset => code.write_reg(0x70, 0).exit(5),
        Then::Wait => unreachable!(),
    }
}

/// Boots `code` with an 8 GiB sparse disk, the image's components placed by `table`,
/// with `opts` before the image.
fn huge_disk_run_with(code: Asm, table: Vec<u8>, opts: &[&str]) -> Outcome {
    let dir = TempDir::new("blk-huge");
    let img = crafted(&dir, code, table);
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(8 << 30))
        .unwrap();
    let mut args: Vec<OsString> = opts.iter().map(OsString::from).collect();
    args.extend([OsString::from("--disk"), disk.into(), img.into()]);
    run(args)
}

/// Boots `code` (one compartment, `blkdev`) with an 8 GiB sparse disk; the device has
/// a thread of its own (2 threads on a 2-CPU host, `--tune blk=thread` anywhere).
fn huge_disk_run(code: Asm) -> Outcome {
    let table = component_table(&["blkdev"], &["blk"], &[0]);
    huge_disk_run_with(code, table, &["--tune", "blk=thread"])
}

#[test]
fn a_crash_is_reported_without_waiting_for_the_queued_requests() {
    // The test's deadline (TIMEOUT) is far below the ~1 TB the queue asks for.
    let out = huge_disk_run(huge_queue_then(Then::Crash));
    out.assert_status(EXIT_CRASH);
    out.assert_stderr_contains("flexos-vmm: compartment 0 (blk) crashed: invalid opcode");
}

/// The device run in its owner's vCPU thread (`blk=vcpu`, what the policy picks when
/// no CPU is left for a device thread): the owner's kick keeps its vCPU thread, and
/// the device's lock, busy with the queue; another compartment's crash must still end
/// the run at once. Compartment 0 crashes after a delay loop (~1 s), compartment 1
/// queues the huge reads and kicks.
#[test]
fn a_peers_crash_ends_the_run_while_the_owner_works_through_its_queue() {
    let code = Asm::default()
        .bytes(&[0x83, 0x7f, BOOT_COMPARTMENT_ID as u8, 0x00]) // cmp dword [rdi+16], 0
        .bytes(&[0x75, 0x0b]) // jne +11: compartment 1 queues
        .bytes(&[0xb9, 0x00, 0x00, 0x00, 0x40]) // mov ecx, 0x40000000
        .bytes(&[0xff, 0xc9, 0x75, 0xfc]) // dec ecx; jnz back
        .bytes(&[0x0f, 0x0b]) // ud2
        .bytes(&huge_queue_then(Then::Wait).0);
    let table = component_table(&["app", "blkdev"], &["app", "blk"], &[0, 1]);
    let out = huge_disk_run_with(code, table, &["-c", "2", "--tune", "blk=vcpu"]);
    out.assert_status(EXIT_CRASH);
    out.assert_stderr_contains("flexos-vmm: compartment 0 (app) crashed: invalid opcode");
}

#[test]
fn a_device_reset_does_not_wait_for_the_queued_requests() {
    let out = huge_disk_run(huge_queue_then(Then::Reset));
    assert_exit(&out, 5);
}

/// A driver that breaks its device and resets it `loops` times: each round brings the
/// queue up (4 entries), posts an available index 4096 ahead of the ring (a lie the
/// queue refuses: DEVICE_NEEDS_RESET), kicks, waits for the NEEDS_RESET status bit
/// and starts over; then it exits 0. Heap: descriptors 0x000, available ring 0x100,
/// used ring 0x200.
fn break_and_reset(loops: u32) -> Asm {
    let round = Asm::default()
        .write_reg(0x70, 0) // reset
        .write_reg(0x70, 1) // ACKNOWLEDGE
        .write_reg(0x70, 3) // DRIVER
        .write_reg(0x24, 1) // DriverFeaturesSel: bits 32..
        .write_reg(0x20, 1) // VIRTIO_F_VERSION_1
        .write_reg(0x70, 11) // FEATURES_OK
        .write_reg(0x30, 0) // QueueSel
        .write_reg(0x38, 4) // QueueNum
        .write_reg_heap(0x80, 0x000)
        .write_reg_heap(0x90, 0x100)
        .write_reg_heap(0xa0, 0x200)
        .write_reg(0x44, 1) // QueueReady
        .write_reg(0x70, 15) // DRIVER_OK
        .heap_u16(0x102, 0x1000) // avail.idx far ahead
        .write_reg(0x50, 0) // QueueNotify(0)
        .read_reg(0x70)
        .bytes(&[0xa8, 0x40, 0x74, 0xf6]); // test al, NEEDS_RESET; jz back to the read
                                           // jnz rel32 back over the round and the 3-byte `dec r12d`.
    let back = -(i32::try_from(round.0.len()).unwrap() + 3 + 6);
    Asm::default()
        .rsi_heap()
        .rbx_from_boot(BOOT_DEVICE0_BASE)
        .bytes(&[0x41, 0xbc]) // mov r12d, loops
        .bytes(&loops.to_le_bytes())
        .bytes(&round.0)
        .bytes(&[0x41, 0xff, 0xcc, 0x0f, 0x85]) // dec r12d; jnz
        .bytes(&back.to_le_bytes())
        .exit(0)
}

/// The virtio-queue crate logged one raw `ERROR virtio_queue::queue` line per broken
/// ring (~380 a second from such a driver); the monitor now says it in its own words,
/// at most once a second, and counts the rest.
#[test]
fn a_driver_breaking_its_device_in_a_loop_gets_a_few_counted_lines() {
    const LOOPS: u64 = 400;
    let dir = TempDir::new("blk-loop");
    let img = crafted(
        &dir,
        break_and_reset(LOOPS as u32),
        component_table(&["blkdev"], &["blk"], &[0]),
    );
    let disk = dir.write("disk.img", &[0u8; 4096]);
    let out = run([OsString::from("--disk"), disk.into(), img.into()]);
    out.assert_status(0);
    assert!(!out.stderr.contains("virtio_queue"), "{out:?}");
    let fault = "flexos-vmm: virtio-blk: available ring: ";
    let mut told = 0u64;
    for line in out.stderr.lines() {
        if line.starts_with(fault) {
            assert!(line.ends_with("; the device needs a reset"), "{line}");
            told += 1;
        } else {
            let n = line
                .strip_prefix("flexos-vmm: virtio-blk: ")
                .and_then(|l| l.strip_suffix(" more reports were suppressed"))
                .unwrap_or_else(|| panic!("unexpected line {line:?}\n{out:?}"));
            told += n.parse::<u64>().unwrap();
        }
    }
    // Every fault accounted for, most of them as a count.
    assert_eq!(told, LOOPS, "{out:?}");
    assert!(out.stderr.lines().count() < 20, "{out:?}");
}
