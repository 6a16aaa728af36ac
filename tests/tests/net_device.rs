//! `--net tap=NAME[,mac=MAC]`: the command line's errors, each one line with its exit
//! status (64 for a bad value or a name that is not a tap, 66 for a missing tap, 71 for
//! a busy tap or no permission), checked before the image's components.
//!
//! Every test that needs an interface runs the monitor inside a network namespace the
//! test creates on a thread of its own (the monitor, started from that thread, runs in
//! it too): the host's own interfaces are never seen or touched.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use flexos_e2e::{
    image, require_tool, run, run_program, vmm_path, Outcome, EXIT_KVM, EXIT_NO_INPUT, EXIT_USAGE,
};

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

/// Runs `f` on a thread of its own inside a network namespace it creates.
fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare only changes this thread's namespaces.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "unshare(CLONE_NEWNET) (the network tests run as root): {}",
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .unwrap()
    })
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
