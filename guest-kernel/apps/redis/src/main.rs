//! `redis`: Redis 7.0.15, unmodified, on the POSIX layer.
//!
//! Redis and musl are built by scripts/build-c from Debian's source packages (0 lines
//! of Redis changed; musl's system call layer replaced, see guest-kernel/posix/musl/)
//! and linked here with the library OS. Its sockets are the `net` component's, its
//! files the `vfs` component's (FAT on the disk given with `--disk`, or RAM with the
//! guest argument `ramfs`).
//!
//! ```text
//! flexos-vmm --net tap=T [--disk D] [-c N] redis.elf -- ip=A/P [redis-server arguments]
//! ```
//!
//! The guest arguments that configure the library OS (`ip=`, `net.*`, `vfs.*`,
//! `posix.*`, `ramfs`, `gate.*`) are not passed to Redis; the rest are, after
//! `redis-server`. Without a configuration file (a first argument not starting with
//! `--`), Redis runs with these defaults, which later arguments override:
//!
//! - `--port 6379 --dir /`: the disk's root holds dump.rdb, and a new boot with the
//!   same disk loads it;
//! - `--save ""`: no automatic BGSAVE (fork is not available, so a failed BGSAVE would
//!   turn writes off); `SAVE` works;
//! - `--protected-mode no`: clients come from the host's side of the tap, not from
//!   loopback; the guest is reachable only inside the network namespace its tap is in.
//!
//! Splits: 1 = everything; 2 = {app, vfs, blkdev} | {net, netdev}; 3 = {app} | {net,
//! netdev} | {vfs, blkdev}; 4 = {app} | {net} | {netdev} | {vfs, blkdev}; 5 = each
//! component alone.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::ffi::c_char;

use flexos_kernel::Args;
use flexos_net::lockout::Limits;

flexos_kernel::main!(main);

// Redis serves many small clients that connect at once (redis-benchmark opens all of
// its clients together): 64 connections (`net.conns=N`, up to 256) and as many
// handshakes in progress per port (`net.synq=N`), with 128 KiB receive buffers,
// instead of the stack's 8 and 2 with 2 MiB (sized for iperf's single stream).
flexos_posix::server_image! {
    net_limits: Limits {
        conns: 64,
        syn_queue: 64,
        socket_rx: 128 << 10,
        ..Limits::DEFAULT
    }
}

unsafe extern "C" {
    /// redis-server's `main` (server.c), unmodified.
    #[link_name = "main"]
    fn redis_main(argc: i32, argv: *mut *mut c_char, envp: *mut *mut c_char) -> i32;
}

/// Redis's arguments: defaults unless a configuration file comes first, then the
/// user's.
fn redis_args(args: &Args) -> Vec<&'static str> {
    let user: Vec<&'static str> = args
        .iter()
        .filter(|a| !flexos_posix::is_system_arg(a))
        .collect();
    let mut argv = alloc::vec!["redis-server"];
    let config_file = user.first().is_some_and(|a| !a.starts_with("--"));
    if !config_file {
        argv.extend([
            "--port",
            "6379",
            "--dir",
            "/",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]);
    }
    argv.extend(user);
    argv
}

fn main(args: &Args) -> i32 {
    let argv = redis_args(args);
    let system = flexos_posix::System {
        files: Some((&VFS_SERVER, VFS)),
        net: Some((&NET_SERVER, NET)),
        defaults: &[],
    };
    flexos_posix::run(system, redis_main, &argv, &["HOME=/", "PATH=/"])
}
