//! The thread policy end to end: runs whose threads outnumber the host's CPUs, runs
//! confined to one CPU, and runs whose CPUs change under them all complete, and the
//! monitor says which policy it chose (`RUST_LOG=info`, `--print-policy`).

use std::ffi::OsString;
use std::process::Command;

use flexos_e2e::crafted::{
    blk_one_request, component_table, image as crafted, net_driver_ok, Asm, Data,
    BOOT_COMPARTMENT_ID, BOOT_DEVICE0_BASE,
};
use flexos_e2e::netns::{NetNs, TAP};
use flexos_e2e::{allowed_cpus, image, require_tool, run, vmm_path, Background, Outcome, TempDir};

/// The policy text the monitor logs at info (without its timestamp and its JSON).
fn policy_line(stderr: &str) -> &str {
    let line = stderr
        .lines()
        .find(|l| l.contains("INFO flexos_vmm::policy: "))
        .unwrap_or_else(|| panic!("no policy line in\n{stderr}"));
    let text = &line[line.find("INFO flexos_vmm::policy: ").unwrap() + 25..];
    text.split(" json={").next().unwrap_or(text)
}

#[test]
fn four_compartments_and_both_devices_on_two_cpus_complete() {
    // app spins, blkdev reads sector 0 and exits with its first byte (7), netdev
    // brings its device up (the device's thread starts) and spins, the fourth spins:
    // five threads that all want a CPU, on (at most) two.
    let blkdev = blk_one_request(0, Data::Heap);
    let netdev = net_driver_ok(Asm::default().rsi_heap().rbx_from_boot(BOOT_DEVICE0_BASE))
        .bytes(&[0xeb, 0xfe]);
    // After the 19-byte dispatch below: blkdev's code, then netdev's.
    let to_netdev = u32::try_from(blkdev.0.len() + 2).unwrap();
    let code = Asm::default()
        .bytes(&[0x8b, 0x47, BOOT_COMPARTMENT_ID as u8]) // mov eax, [rdi+16]
        .bytes(&[0x83, 0xf8, 0x01]) // cmp eax, 1
        .bytes(&[0x74, 0x0b]) // je blkdev (+11)
        .bytes(&[0x83, 0xf8, 0x02]) // cmp eax, 2
        .bytes(&[0x0f, 0x84]) // je netdev (rel32)
        .bytes(&to_netdev.to_le_bytes())
        .bytes(&[0xeb, 0xfe]) // jmp $ (compartments 0 and 3)
        .bytes(&blkdev.0)
        .bytes(&netdev.0);
    let dir = TempDir::new("policy-4");
    let table = component_table(
        &["app", "blkdev", "netdev", "spare"],
        &["app", "blk", "net", "spare"],
        &[0, 1, 2, 3],
    );
    let img = crafted(&dir, code, table);
    let disk = dir.write("disk.img", &[7u8; 4096]);
    let ns = NetNs::with_tap("policy4");
    let out = ns.run_monitor([
        OsString::from("--compartments"),
        "4".into(),
        "--disk".into(),
        disk.into(),
        "--net".into(),
        format!("tap={TAP}").into(),
        img.into(),
    ]);
    out.assert_status(7);
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_run_confined_to_one_cpu_completes() {
    require_tool("taskset", "util-linux");
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(vmm_path())
        .args(["-c", "3"])
        .arg(image("gatebench"))
        .args(["--", "case=gate-chain", "calls=300"])
        .env("RUST_LOG", "flexos_vmm::policy=info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        policy_line(&stderr).starts_with("3 busy thread(s) on 1 CPU(s) [0] (crowded)"),
        "{stderr}"
    );
    // No spinning where every waiter's peer needs the one CPU.
    assert!(
        policy_line(&stderr).ends_with("vcpu-0 spin 0, vcpu-1 spin 0, vcpu-2 spin 0"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"case\":\"gate-chain\",\"compartments\":3,\"calls\":300,"),
        "{stdout}"
    );
}

#[test]
fn a_run_whose_cpus_change_midway_completes() {
    require_tool("taskset", "util-linux");
    let cpus = allowed_cpus();
    assert!(cpus.len() >= 2, "this test needs 2 CPUs, has {cpus:?}");
    let img = image("gatebench");
    // A chain long enough to be running when its CPUs change (3 compartments, pinned
    // over both CPUs by the policy).
    let run = Background::start_env(
        &[
            "-c",
            "3",
            img.to_str().unwrap(),
            "--",
            "case=gate-chain",
            "calls=4000",
        ],
        true,
        &[("RUST_LOG", "flexos_vmm::policy=info")],
    );
    run.wait_until(
        |l| l.contains("INFO flexos_vmm::policy: "),
        "the policy line",
    );
    // Every thread onto the first CPU, then back onto all: the pinned threads' CPU
    // goes away and comes back.
    let pid = run.pid().to_string();
    let first = cpus[0].to_string();
    let all: Vec<String> = cpus.iter().map(ToString::to_string).collect();
    for list in [first, all.join(",")] {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", &list, &pid])
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    }
    let (status, _, stdout) = run.wait();
    assert_eq!(status, 0, "{stdout}");
    assert!(
        stdout.contains("\"case\":\"gate-chain\",\"compartments\":3,\"calls\":"),
        "{stdout}"
    );
}

#[test]
fn print_policy_shows_the_choice_without_running() {
    let dir = TempDir::new("policy-print");
    // The disk is never opened: it does not even exist.
    let missing = dir.path().join("nope.img");
    let out: Outcome = run([
        OsString::from("--print-policy"),
        "-c".into(),
        "2".into(),
        "--disk".into(),
        missing.into(),
        image("sqlite").into(),
    ]);
    out.assert_status(0).assert_stderr_empty();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].contains("virtio-blk of compartment 1: owner's vCPU"),
        "{out:?}"
    );
    assert!(lines[1].starts_with("{\"cpus\":["), "{out:?}");
    // A bad --tune is a usage error naming the key.
    let out = run([
        OsString::from("--tune"),
        "spin=fast".into(),
        image("hello").into(),
    ]);
    out.assert_status(64);
    out.assert_stderr_contains("'spin=fast': want a number of rounds or auto");
}
