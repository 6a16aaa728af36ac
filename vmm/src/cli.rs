//! Command-line interface (docs/usage.md, exit status and errors).

use std::path::PathBuf;

use clap::Parser;

/// Boot one library-OS image into one KVM VM per compartment.
#[derive(Debug, Parser)]
#[command(
    name = "flexos-vmm",
    version,
    about = "Boot one FlexOS-style library-OS image into N KVM VMs, one per compartment",
    long_about = "Boot one FlexOS-style library-OS image into N KVM VMs, one per compartment, \
wired together by shared-memory RPC rings.\n\n\
The guest runs in ring 3; crashes and isolation violations are reported with symbolized \
backtraces.",
    after_help = "Exit status: the guest's exit code (0..=63) on a clean exit; 64 usage error; \
65 bad image; 66 file not found or unreadable, or no such tap (--net); 70 a compartment crashed or \
violated isolation; 71 KVM unavailable or failed, the tap busy or forbidden, or a monitor thread made a system call \
outside its sandbox; 75 the disk is in \
use by another run; 130 / 143 stopped by SIGINT / SIGTERM.\n\n\
Examples:\n  flexos-vmm --timings target/images/hello.elf -- exit=3\n  \
flexos-vmm --list-components target/images/gatebench.elf\n  \
flexos-vmm --compartments 2 target/images/gatebench.elf -- calls=100000\n  \
flexos-vmm --net tap=flx0 -c 2 target/images/iperf.elf -- ip=10.0.0.2/24\n  \
flexos-vmm --gdb 127.0.0.1:1234 --compartments 2 target/images/gatebench.elf\n\n\
Guest arguments starting with `gate.` tune the guest kernel (gate.spin=N: polling rounds \
before an idle compartment sleeps) and are not passed to the app. RUST_LOG=debug traces \
the monitor."
)]
pub struct Cli {
    /// The guest image (a static x86_64 ELF linked at 1 MiB).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Arguments passed to the guest (after `--`).
    #[arg(value_name = "GUEST ARGS", last = true)]
    pub guest_args: Vec<String>,

    /// Number of compartments (one VM each), using the image's default split
    /// (see --list-components).
    #[arg(
        short = 'c',
        long,
        value_name = "N",
        default_value_t = 1,
        conflicts_with = "config"
    )]
    pub compartments: u32,

    /// Placement file (TOML) instead of --compartments: [[compartment]] tables with
    /// `name` and `components`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Private memory per compartment, in MiB.
    #[arg(short = 'm', long, value_name = "MiB", default_value_t = 64)]
    pub mem: u64,

    /// Size of the shared region, in MiB.
    #[arg(long = "shared-mem", value_name = "MiB", default_value_t = 16)]
    pub shared_mem: u64,

    /// Attach a virtio-blk disk backed by the host file PATH (its size a multiple of 512
    /// bytes); `,readonly` offers it read-only, so guest writes fail with an I/O error.
    /// The file is locked for the run: one writer, or any number of `,readonly`
    /// readers; another run is refused (exit 75) naming the holder.
    /// The disk belongs to the compartment hosting the image's `blkdev` component: only
    /// that compartment sees its MMIO window; an access from any other is an isolation
    /// violation.
    #[arg(long, value_name = "PATH[,readonly]", value_parser = crate::mmio::parse_disk_arg)]
    pub disk: Option<crate::mmio::DiskArg>,

    /// Attach a virtio-net device backed by the existing tap interface NAME of this
    /// network namespace (opened with a vnet header and TSO/checksum offloads; the
    /// monitor never creates one: see scripts/net-up). `mac=` sets the guest's MAC
    /// address (default 52:54:00:12:34:56). The device belongs to the compartment
    /// hosting the image's `netdev` component: only that compartment sees its MMIO
    /// window, after the disk's when there is one.
    #[arg(long, value_name = "tap=NAME[,mac=MAC]", value_parser = crate::mmio::parse_net_arg)]
    pub net: Option<crate::mmio::NetArg>,

    /// Start a GDB stub on HOST:PORT (TCP) or a Unix socket path and wait for gdb
    /// before the first guest instruction. Each compartment is one gdb thread.
    #[arg(long, value_name = "ADDR:PORT|PATH")]
    pub gdb: Option<String>,

    /// Run at full speed; on a crash, stop every compartment and wait for gdb on
    /// HOST:PORT (TCP) or a Unix socket path.
    #[arg(long, value_name = "ADDR:PORT|PATH", conflicts_with = "gdb")]
    pub gdb_on_crash: Option<String>,

    /// How long --gdb-on-crash waits for gdb after a crash (default: for ever).
    #[arg(long, value_name = "SECONDS", requires = "gdb_on_crash")]
    pub gdb_wait: Option<u64>,

    /// On a crash, write one ELF core file per compartment into DIR (created 0700 if
    /// missing; a symlink is not followed): DIR/<image stem>.<id>.<name>.core, mode
    /// 0600, replacing an old core; a link or anything else at that name is left
    /// alone and the core takes the next free name (<stem>.<id>.<name>.1.core, ...).
    /// (Not with --gdb, whose session owns the crash stop.)
    #[arg(long, value_name = "DIR", conflicts_with = "gdb")]
    pub core: Option<PathBuf>,

    /// Override the thread policy's choices (for experiments and benchmarks):
    /// spin=N|auto (guest spin rounds before sleeping), blk=thread|vcpu|auto (the disk
    /// on its own thread or in its owner's vCPU thread), pin=on|off|auto (each thread
    /// on one CPU), idle-spinner=on|off|auto (a SCHED_IDLE spinner per CPU). The
    /// policy in force is logged at RUST_LOG=info.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = crate::policy::Tune::parse)]
    pub tune: Option<crate::policy::Tune>,

    /// Print the image's components and default splits, then exit.
    #[arg(long)]
    pub list_components: bool,

    /// Print the thread policy this command line would run with (the text, then one
    /// line of JSON), then exit without opening the disk or the tap.
    #[arg(long)]
    pub print_policy: bool,

    /// Print boot timings to stderr, in microseconds since the monitor started: per
    /// compartment when its VM was created, its memory mapped, its memory slots
    /// registered, its vCPU
    /// created, its machine set up (image, tables, registers, boot info), its first
    /// entry, and its guest's main; then the run's end.
    #[arg(long)]
    pub timings: bool,

    /// Run without the sandbox, to debug the monitor itself (under strace, say). By
    /// default every monitor thread runs under a seccomp filter of the system calls it
    /// makes; a call outside it ends the run with one line naming the thread and the
    /// call (exit 71). To check it, FLEXOS_SANDBOX_SELFTEST=KIND (main, signals, vcpu,
    /// virtio-blk, virtio-net, gdb, post-mortem, idle) has the first thread of that kind
    /// make such a call.
    #[arg(long)]
    pub no_seccomp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn guest_args_follow_double_dash() {
        let cli = Cli::try_parse_from(["flexos-vmm", "-m", "32", "img.elf", "--", "exit=3", "-x"])
            .unwrap();
        assert_eq!(cli.mem, 32);
        assert_eq!(cli.guest_args, ["exit=3", "-x"]);
    }

    #[test]
    fn disk_takes_a_path_and_an_optional_readonly_flag() {
        let cli = Cli::try_parse_from(["flexos-vmm", "--disk", "d.img,readonly", "i"]).unwrap();
        let disk = cli.disk.unwrap();
        assert_eq!((disk.path.to_str(), disk.readonly), (Some("d.img"), true));
        let e = Cli::try_parse_from(["flexos-vmm", "--disk", "d.img,rw", "i"]).unwrap_err();
        assert!(e.to_string().contains("unknown flag \"rw\""), "{e}");
    }

    #[test]
    fn net_takes_a_tap_and_an_optional_mac() {
        let cli = Cli::try_parse_from(["flexos-vmm", "--net", "tap=flx0", "i"]).unwrap();
        let net = cli.net.unwrap();
        assert_eq!(
            (net.tap.as_str(), net.mac),
            ("flx0", crate::mmio::DEFAULT_MAC)
        );
        let cli = Cli::try_parse_from(["flexos-vmm", "--net", "tap=t,mac=02:00:00:00:00:07", "i"])
            .unwrap();
        assert_eq!(cli.net.unwrap().mac, [2, 0, 0, 0, 0, 7]);
        let e = Cli::try_parse_from(["flexos-vmm", "--net", "tap=t,foo=1", "i"]).unwrap_err();
        assert!(e.to_string().contains("unknown key \"foo\""), "{e}");
    }

    #[test]
    fn gdb_and_gdb_on_crash_conflict() {
        assert!(
            Cli::try_parse_from(["flexos-vmm", "--gdb", "a", "--gdb-on-crash", "b", "i"]).is_err()
        );
        assert!(Cli::try_parse_from(["flexos-vmm", "--gdb-wait", "1", "i"]).is_err());
    }

    #[test]
    fn config_and_compartments_conflict() {
        assert!(Cli::try_parse_from(["flexos-vmm", "-c", "2", "--config", "x", "i"]).is_err());
    }
}
