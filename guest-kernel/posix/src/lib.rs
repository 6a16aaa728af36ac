//! `flexos-posix`: the POSIX layer that lets an unmodified C program, linked with musl,
//! run in a compartment.
//!
//! musl is built with its system call layer replaced (`guest-kernel/posix/musl/`):
//! every system call is a plain call of [`__flexos_syscall`](syscall::__flexos_syscall),
//! so no `syscall` instruction ever reaches the CPU (in ring 3 under kvm-pvm it would
//! trap to the guest's ring 0, which is emulated instruction by instruction). The
//! layer answers each call inside the compartment or through the components' gates,
//! behind narrow seams, one module each:
//!
//! - [`files`]: paths and files, through the `fs` gate of the vfs component (FAT on
//!   virtio-blk, or its RAM file system); `/dev/null` and `/dev/urandom` here;
//! - [`builtin`]: read-only files in memory: `/etc/passwd`, `/etc/group` and the
//!   image's defaults;
//! - [`socket`]: TCP over the `sock` gate of the net component; [`epoll`]: readiness;
//! - [`pipe`]: pipes between the program's threads;
//! - [`fd`]: the descriptor table; [`io`]: reads, writes and the rest on descriptors;
//! - [`mem`]: `mmap` and friends over the compartment's heap;
//! - [`sched`]: cooperative threads (`clone` for threads only), futexes, and every
//!   blocking wait; TLS through the FS base;
//! - [`clock`]: time from the TSC; [`process`]: ids, limits, signals (recorded, never
//!   delivered asynchronously), randomness, `uname`, the end of the run;
//! - [`start`]: the initial stack and the call of musl's `__libc_start_main`.
//!
//! An image declares its components and servers as any other does, then calls
//! [`run`] with a [`System`] naming the vfs and net components it has.

#![no_std]

extern crate alloc;

use core::cell::UnsafeCell;

pub mod builtin;
mod clock;
mod epoll;
mod fd;
mod files;
mod io;
mod linux;
mod mem;
mod nr_names;
mod pipe;
mod process;
mod sched;
mod socket;
mod start;
mod syscall;

pub use start::CMain;

/// Global state of the layer, without locks: a compartment has one vCPU and takes no
/// interrupts, and its threads switch only inside [`sched`]'s blocking calls, where no
/// borrow of any `Global` is held. Each holds a `RefCell`, so a mistake in that rule
/// is a panic (reported by the monitor with a backtrace), never an aliased `&mut`.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: see the type's docs: one thread of execution at a time, and the `RefCell`
// inside checks every borrow.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Global(UnsafeCell::new(value))
    }

    pub fn get(&self) -> &T {
        // SAFETY: only shared references are handed out; mutation goes through the
        // `RefCell` (or `Cell`) inside, on the one thread of execution.
        unsafe { &*self.0.get() }
    }
}

/// The components the program's system calls reach.
pub struct System {
    /// The vfs component (files), if the image has one.
    pub files: Option<(&'static flexos_vfs::fs::Server<flexos_vfs::Vfs>, u16)>,
    /// The net component (sockets), if the image has one.
    pub net: Option<(&'static flexos_net::sock::Server<flexos_net::Net>, u16)>,
    /// Read-only files the image brings, by name in the root directory: a file of the
    /// same name on the disk takes precedence (a program's default configuration).
    pub defaults: builtin::Files,
}

/// Declares an image that runs a C server program (Redis, Nginx) over the network and
/// the disk: components app (the program, musl and this layer), net, netdev, vfs and
/// blkdev with the default splits 1 = everything; 2 = {app, vfs, blkdev} | {net,
/// netdev}; 3 = {app} | {net, netdev} | {vfs, blkdev}; 4 = {app} | {net} | {netdev} |
/// {vfs, blkdev}; 5 = each alone; their servers (`NETDEV_SERVER`, `NET_SERVER` with the
/// stack's `Limits` given, `VFS_SERVER`) and the pollers of net and netdev. The image
/// depends on flexos-kernel, flexos-net, flexos-netdev, flexos-vfs and flexos-blkdev.
#[macro_export]
macro_rules! server_image {
    (net_limits: $limits:expr) => {
        ::flexos_kernel::components! {
            components: [APP = "app", NET = "net", NETDEV = "netdev", VFS = "vfs", BLKDEV = "blkdev"],
            splits: [
                [("all", ["app", "net", "netdev", "vfs", "blkdev"])],
                [("app", ["app", "vfs", "blkdev"]), ("net", ["net", "netdev"])],
                [("app", ["app"]), ("net", ["net", "netdev"]), ("fs", ["vfs", "blkdev"])],
                [("app", ["app"]), ("net", ["net"]), ("netdev", ["netdev"]), ("fs", ["vfs", "blkdev"])],
                [("app", ["app"]), ("net", ["net"]), ("netdev", ["netdev"]), ("vfs", ["vfs"]), ("blkdev", ["blkdev"])],
            ],
        }

        /// The driver, serving the stack through gates when it has its own compartment.
        static NETDEV_SERVER: ::flexos_netdev::nic::Server<::flexos_netdev::Netdev> =
            ::flexos_netdev::nic::Server(::flexos_netdev::Netdev::new(NET));
        /// The stack; its rings and wake-ups go to the app.
        static NET_SERVER: ::flexos_net::sock::Server<::flexos_net::Net> = ::flexos_net::sock::Server(
            ::flexos_net::Net::new(APP, NETDEV, &NETDEV_SERVER).with_limits($limits),
        );
        /// The file system, over the disk of the `blkdev` component.
        static VFS_SERVER: ::flexos_vfs::fs::Server<::flexos_vfs::Vfs> =
            ::flexos_vfs::fs::Server(::flexos_vfs::Vfs::new(BLKDEV));

        ::flexos_kernel::servers! {
            NET => flexos_net::sock(NET_SERVER),
            NETDEV => flexos_netdev::nic(NETDEV_SERVER),
            VFS => flexos_vfs::fs(VFS_SERVER),
            BLKDEV => flexos_blkdev::blk(flexos_blkdev::SERVER),
        }

        ::flexos_kernel::pollers! {
            NET => NET_SERVER.0,
            NETDEV => NETDEV_SERVER.0,
        }
    };
}

/// A guest argument that configures the library OS (`ip=`, `gw=`, `net.*`, `vfs.*`,
/// `posix.*`, `gate.*`, `ramfs`), not the C program.
pub fn is_system_arg(arg: &str) -> bool {
    arg == "ramfs"
        || ["ip=", "gw=", "net.", "vfs.", "posix.", "gate."]
            .iter()
            .any(|p| arg.starts_with(p))
}

/// Runs the C program `main` as `argv[0] args...` with the environment `env`
/// (`NAME=value` strings); returns its exit status (musl's `exit` ends the run
/// before this returns, so it only does if `main` is not a C main).
pub fn run(system: System, main: CMain, args: &[&str], env: &[&str]) -> i32 {
    fd::init_stdio();
    builtin::set_defaults(system.defaults);
    if let Some((server, component)) = system.files {
        files::connect(server, component);
    }
    if let Some((server, component)) = system.net {
        socket::connect_net(server, component);
    }
    start::run(main, args, env)
}
