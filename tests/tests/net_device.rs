//! `--net tap=NAME[,mac=MAC]`: the command line's errors, each one line with its exit
//! status (64 for a bad value or a name that is not a tap, 66 for a missing tap, 71 for
//! a busy tap or no permission), checked before the image's components.
//!
//! Crafted guests (no guest kernel) drive the device's window: it follows the disk's,
//! answers as virtio-net, a frame goes from the tap into a guest buffer and one from
//! the guest out of the tap to a host socket, a hostile driver fails the device
//! (DEVICE_NEEDS_RESET and one `flexos-vmm: virtio-net:` line), never the monitor, and
//! any other compartment's access to the window is an isolation violation.
//!
//! Every test that needs an interface runs the monitor inside a network namespace the
//! test creates on a thread of its own (the monitor, started from that thread, runs in
//! it too): the host's own interfaces are never seen or touched.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use flexos_e2e::crafted::{
    component_table, image as crafted_with, net_driver_ok, Asm, BOOT_DEVICE0, BOOT_DEVICE_COUNT,
    DEVICE_SLOT,
};
use flexos_e2e::{
    image, require_tool, run, run_program, vmm_path, Outcome, TempDir, EXIT_CRASH, EXIT_KVM,
    EXIT_NO_INPUT, EXIT_USAGE,
};
use flexos_testkit::in_private_netns;

fn vmm(args: &[&str]) -> Outcome {
    run(args.iter().map(OsString::from))
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

/// Creates tap `name` in the current thread's namespace.
fn tap(name: &str) {
    require_tool("ip", "iproute2");
    let out = run_program("ip", ["tuntap", "add", "dev", name, "mode", "tap"]);
    out.assert_status(0);
}

/// Attaches to tap `name` the way the monitor does, so that it is busy.
fn hold(name: &str) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .unwrap();
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes one ifreq, valid for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    file
}

#[test]
fn bad_net_values_exit_64() {
    let hello = image("hello");
    let hello = hello.to_str().unwrap();
    for (value, needle) in [
        (
            "tap=flx0,speed=10",
            "unknown key \"speed\"; give tap=NAME[,mac=MAC]",
        ),
        ("flx0", "\"flx0\" is not key=value"),
        (
            "tap=",
            "tap name \"\" is not an interface name: it is empty",
        ),
        ("tap=this-name-is-too-long", "longer than 15 bytes"),
        ("mac=02:00:00:00:00:01", "no tap name"),
        (
            "tap=flx0,mac=52:54:00:12:34",
            "bad MAC address \"52:54:00:12:34\"",
        ),
        ("tap=flx0,mac=01:00:5e:00:00:01", "is a multicast address"),
    ] {
        let out = vmm(&["--net", value, hello]);
        assert_error(
            &out,
            EXIT_USAGE,
            &["--net", needle, "see flexos-vmm --help"],
        );
    }
}

#[test]
fn a_missing_tap_exits_66_before_the_image_is_looked_at() {
    // hello has no netdev component: the tap is checked first, like a --disk file.
    let out = in_private_netns(|| vmm(&["--net", "tap=flx0", image("hello").to_str().unwrap()]));
    assert_error(&out, EXIT_NO_INPUT, &[]);
    assert_eq!(
        out.stderr,
        "flexos-vmm: error: --net: no tap device flx0 in this network namespace (create one, e.g. scripts/net-up)\n"
    );
}

#[test]
fn an_image_without_a_netdev_component_cannot_take_a_tap() {
    let out = in_private_netns(|| {
        tap("flx0");
        vmm(&["--net", "tap=flx0", image("gatebench").to_str().unwrap()])
    });
    assert_error(
        &out,
        EXIT_USAGE,
        &[
            "--net needs a `netdev` component (its driver) in the image, which has: bench, callee, relay1, relay2",
        ],
    );
}

#[test]
fn an_interface_that_is_not_a_tap_exits_64() {
    let out = in_private_netns(|| vmm(&["--net", "tap=lo", image("hello").to_str().unwrap()]));
    assert_error(&out, EXIT_USAGE, &["--net: lo is not a tap device"]);
}

#[test]
fn a_busy_tap_exits_71() {
    let out = in_private_netns(|| {
        tap("flx0");
        let _held = hold("flx0");
        vmm(&["--net", "tap=flx0", image("hello").to_str().unwrap()])
    });
    assert_error(
        &out,
        EXIT_KVM,
        &["--net: tap device flx0 is busy (another process has it open) (stop it, or give another tap)"],
    );
}

#[test]
fn a_tap_this_user_may_not_open_exits_71() {
    require_tool("setpriv", "util-linux");
    let out = in_private_netns(|| {
        // Created by root for root: another user has no right to it.
        tap("flx0");
        let vmm = vmm_path();
        let hello = image("hello");
        run_program(
            "setpriv",
            [
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                vmm.to_str().unwrap(),
                "--net",
                "tap=flx0",
                hello.to_str().unwrap(),
            ],
        )
    });
    assert_error(
        &out,
        EXIT_KVM,
        &[
            "--net: no permission to open tap device flx0: ",
            "ip tuntap add NAME mode tap user USER",
        ],
    );
}

// --- Crafted guests (no guest kernel): the device as a hostile driver meets it. ---

const DEVICE_BLOCK: u32 = 2;
const DEVICE_NET: u32 = 1;

/// A one-page image running `code` with components `blkdev` and `netdev` in one
/// compartment, `drivers`.
fn crafted(dir: &TempDir, code: Asm) -> PathBuf {
    crafted_with(
        dir,
        code,
        component_table(&["blkdev", "netdev"], &["drivers"], &[0, 0]),
    )
}

/// Boots `code` with `--net tap=flx0` (and a disk, if asked) in a private namespace.
fn boot_with_tap(code: Asm, with_disk: bool) -> Outcome {
    let dir = TempDir::new("net");
    let img = crafted(&dir, code);
    let mut args: Vec<OsString> = Vec::new();
    if with_disk {
        args.extend(["--disk".into(), dir.write("disk.img", &[0u8; 4096]).into()]);
    }
    args.extend(["--net".into(), "tap=flx0".into(), img.into()]);
    in_private_netns(|| {
        tap("flx0");
        run(args)
    })
}

#[test]
fn the_network_window_follows_the_disks_and_answers_as_virtio_net() {
    // The boot info lists the disk, then the network device in the next window; its
    // registers say virtio-net and its config space holds the default MAC
    // (52:54:00:12:34:56). Exit 21 once every check passed.
    let second = BOOT_DEVICE0 + DEVICE_SLOT;
    let code = Asm::default()
        .expect_boot_u32(BOOT_DEVICE_COUNT, 2)
        .expect_boot_u32(BOOT_DEVICE0, DEVICE_BLOCK)
        .expect_boot_u32(second, DEVICE_NET)
        .expect_boot_u32(second + 8, 0xD000_1000)
        .rbx_from_boot(second + 8)
        .read_reg(0x000)
        .expect_eax(0x7472_6976)
        .read_reg(0x008)
        .expect_eax(DEVICE_NET)
        .read_reg(0x104) // config: mac[4..8] = 34 56 00 00
        .expect_eax(0x5634)
        .exit(21);
    let out = boot_with_tap(code, true);
    out.assert_status(21).assert_stderr_empty();
}

/// A driver that sets the device up by hand (VERSION_1 only: receive chains must hold
/// 12 + 1514 bytes; both queues of 4 in its heap), posts one receive chain of a single
/// descriptor (`addr` from `desc`, `len`), kicks, waits until the chain is used and the
/// device shows DEVICE_NEEDS_RESET, and exits 33. Heap: receive queue 0x000/0x100/
/// 0x200, transmit queue 0x400/0x500/0x600, buffer 0x800.
fn hostile_receive(desc: Asm, len: u32) -> Asm {
    let code = Asm::default().rsi_heap().rbx_from_boot(BOOT_DEVICE0 + 8);
    let chain = Asm(code.0.into_iter().chain(desc.0).collect())
        .heap_u32(0x008, len)
        .heap_u32(0x00c, 2); // VRING_DESC_F_WRITE, no next
    net_driver_ok(chain)
        .bytes(&[0x66, 0xc7, 0x86])
        .bytes(&0x102u32.to_le_bytes())
        .bytes(&1u16.to_le_bytes()) // avail.idx = 1
        .write_reg(0x50, 0) // QueueNotify(receiveq)
        // Spin until used.idx == 1: pause; movzx eax, word [rsi+0x202]; cmp eax, 1; jne.
        .bytes(&[0xf3, 0x90, 0x0f, 0xb7, 0x86])
        .bytes(&0x202u32.to_le_bytes())
        .bytes(&[0x83, 0xf8, 0x01, 0x75, 0xf2])
        // Spin until Status has NEEDS_RESET: mov eax, [rbx+0x70]; test al, 0x40; je.
        .read_reg(0x70)
        .bytes(&[0xa8, 0x40, 0x74, 0xf6])
        .exit(33)
}

#[test]
fn a_receive_buffer_in_the_monitors_area_fails_the_device_not_the_monitor() {
    // 0x1000: the compartment's page tables, outside the memory the device may use.
    let out = boot_with_tap(
        hostile_receive(Asm::default().heap_abs(0x000, 0x1000), 1526),
        false,
    );
    out.assert_status(33);
    assert_eq!(
        out.stderr,
        "flexos-vmm: virtio-net: receive queue, chain 0: descriptor 0x1000+1526 lies outside the device's memory; the device needs a reset\n"
    );
}

#[test]
fn a_tiny_receive_buffer_fails_the_device_not_the_monitor() {
    let out = boot_with_tap(
        hostile_receive(Asm::default().heap_ptr(0x000, 0x800), 64),
        false,
    );
    out.assert_status(33);
    assert_eq!(
        out.stderr,
        "flexos-vmm: virtio-net: receive queue, chain 0: receive chain holds 64 bytes; it must hold 1526 (header and largest frame); the device needs a reset\n"
    );
}

/// A vnet header (all zero: no offload) and a UDP/IPv4 frame from 10.77.0.2:4000
/// (MAC 52:54:00:12:34:56) to 10.77.0.1:`port`, destination MAC left zero.
fn udp_frame(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend(flexos_testkit::frames::udp_frame(
        [0; 6],
        [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
        port,
        payload,
    ));
    f
}

/// SIOCGIFFLAGS: true once `name` is up with a carrier (a tap has one while a
/// process has it open).
fn running(sock: i32, name: &str) -> bool {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads and writes one ifreq, valid for the call.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: SIOCGIFFLAGS filled in the flags member.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    flags & libc::IFF_RUNNING != 0
}

#[test]
fn a_guest_driver_receives_from_and_sends_into_the_tap() {
    // The guest (VERSION_1 only: 1526-byte receive buffers) posts one receive buffer,
    // waits for a frame, checks it is the host's ARP request for 10.77.0.2 with
    // num_buffers 1, then answers the host's UDP socket from 10.77.0.2 with the ARP
    // request's sender MAC as destination, waits for the transmit to be used, exits 42.
    // Heap: queues as in hostile_receive, receive buffer 0x800, transmit frame 0x1000.
    let payload = b"through the tap";
    let frame = udp_frame(5555, payload);
    let code = Asm::default()
        .rsi_heap()
        .rbx_from_boot(BOOT_DEVICE0 + 8)
        .heap_ptr(0x000, 0x800)
        .heap_u32(0x008, 1526)
        .heap_u32(0x00c, 2);
    let code = net_driver_ok(code)
        .heap_u16(0x102, 1)
        .write_reg(0x50, 0)
        .spin_heap_u16(0x202, 1)
        // Used length: header + a 42-byte ARP frame.
        .expect_heap_u32(0x208, 12 + 42)
        .expect_heap_u16(0x80a, 1) // num_buffers
        .expect_heap_u16(0x80c + 12, 0x0608) // EtherType ARP (big endian)
        .expect_heap_u16(0x80c + 14 + 6, 0x0100) // request
        .expect_heap_u32(0x80c + 14 + 24, u32::from_le_bytes([10, 77, 0, 2]))
        .heap_bytes(0x1000, &frame)
        .heap_copy6(0x80c + 6, 0x1000 + 12)
        .heap_ptr(0x400, 0x1000)
        .heap_u32(0x408, frame.len() as u32)
        .heap_u32(0x40c, 0)
        .heap_u16(0x502, 1)
        .write_reg(0x50, 1)
        .spin_heap_u16(0x602, 1)
        .exit(42);
    let dir = TempDir::new("net");
    let img = crafted(&dir, code);
    let (out, got) = in_private_netns(|| {
        // No IPv6 chatter on the new link: the first frame out of the tap is the ARP
        // request the test causes. /proc/sys/net is this thread's namespace's.
        for conf in ["all", "default"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1").unwrap();
        }
        tap("flx0");
        run_program("ip", ["addr", "add", "10.77.0.1/24", "dev", "flx0"]).assert_status(0);
        run_program("ip", ["link", "set", "flx0", "up"]).assert_status(0);
        // The thread is in the test's namespace: the socket is too.
        let udp = std::net::UdpSocket::bind("10.77.0.1:5555").unwrap();
        udp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        std::thread::scope(|scope| {
            let monitor = scope.spawn(|| {
                run([
                    OsString::from("--net"),
                    "tap=flx0".into(),
                    img.clone().into(),
                ])
            });
            // The tap has a carrier once the monitor holds it: from then on a frame
            // for the guest waits in the tap until the guest takes it. The bound only
            // turns a monitor that never opens the tap into a failure.
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !running(udp.as_raw_fd(), "flx0") {
                assert!(
                    std::time::Instant::now() < give_up && !monitor.is_finished(),
                    "the tap never came up"
                );
                std::thread::yield_now();
            }
            // A datagram for 10.77.0.2: the host asks who has it, out of the tap.
            assert_eq!(udp.send_to(b"x", "10.77.0.2:9").unwrap(), 1);
            let mut buf = [0u8; 64];
            // A timeout leaves `got` empty; the assertion below says what was missing.
            let n = udp.recv(&mut buf).unwrap_or(0);
            let got = buf[..n].to_vec();
            (monitor.join().unwrap(), got)
        })
    });
    out.assert_status(42).assert_stderr_empty();
    assert_eq!(got, payload);
}

/// Runs a 2-compartment guest whose compartment 1 (net) hosts netdev and owns the
/// network device (it spins), while compartment 0 (app) runs `access` with rbx at the
/// device's window; returns the first line of the crash report.
fn non_owner_access(access: Asm) -> String {
    const BOOT_COMPARTMENT_ID: u8 = 16;
    let code = Asm::default()
        .bytes(&[0x83, 0x7f, BOOT_COMPARTMENT_ID, 0x00]) // cmp dword [rdi+16], 0
        .bytes(&[0x74, 0x02, 0xeb, 0xfe]) // je +2; jmp $ (the owner spins)
        .expect_boot_u32(BOOT_DEVICE_COUNT, 0)
        .bytes(&[0x48, 0xbb]) // mov rbx, MMIO_BASE
        .bytes(&0xD000_0000u64.to_le_bytes())
        .bytes(&access.0)
        .bytes(&[0x0f, 0x0b]);
    let dir = TempDir::new("net");
    let table = component_table(&["app", "netdev"], &["app", "net"], &[0, 1]);
    let img = crafted_with(&dir, code, table);
    let out = in_private_netns(|| {
        tap("flx0");
        run([
            OsString::from("--compartments"),
            "2".into(),
            "--net".into(),
            "tap=flx0".into(),
            img.into(),
        ])
    });
    out.assert_status(EXIT_CRASH);
    out.stderr.lines().next().unwrap_or_default().to_string()
}

#[test]
fn another_compartment_reading_the_network_window_violates_isolation() {
    let headline = non_owner_access(Asm::default().read_reg(0));
    assert!(
        headline.starts_with(
            "flexos-vmm: compartment 0 (app) violated isolation: read of 4 bytes at guest-physical 0xd0000000, which is the MMIO window of the network device owned by compartment 1 (net), at "
        ),
        "{headline}"
    );
}

#[test]
fn another_compartment_cannot_kick_the_network_queues() {
    // The ioeventfds are the owner's VM's only: here a kick exits and is a violation.
    let headline = non_owner_access(Asm::default().write_reg(0x50, 1));
    assert!(
        headline.starts_with(
            "flexos-vmm: compartment 0 (app) violated isolation: write of 4 bytes at guest-physical 0xd0000050, which is the MMIO window of the network device owned by compartment 1 (net), at "
        ),
        "{headline}"
    );
}
