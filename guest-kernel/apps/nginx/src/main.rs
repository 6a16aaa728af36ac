//! `nginx`: Nginx 1.22.1, unmodified, on the POSIX layer, serving the disk.
//!
//! Nginx and musl are built by scripts/build-posix from Debian's source packages (0
//! lines of Nginx changed; its own configure and Makefile; the flags that leave out
//! what the library OS cannot offer are listed there) and linked here with the library
//! OS. Its sockets are the `net` component's, its files the `vfs` component's (FAT on
//! the disk given with `--disk`, or RAM with the guest argument `ramfs`).
//!
//! ```text
//! flexos-vmm --net tap=T --disk D[,readonly] [-c N] nginx.elf -- ip=A/P [nginx.port=80]
//!     [nginx.access_log=on] [nginx arguments]
//! ```
//!
//! Nginx runs as one process (`master_process off; daemon off; worker_processes 1`)
//! and serves the disk's root directory: put files there with `mcopy`. Its
//! configuration is `/nginx.conf` on the disk when there is one; otherwise the
//! built-in default below, which serves `/` on port `nginx.port` with `index.html`,
//! `sendfile off`, an open-file cache, keep-alive, no pid file and no access log. With
//! `nginx.access_log=on` it logs every request to `/access.log` on the disk. Errors go
//! to the console. A disk attached read-only still serves (only the access log, if
//! turned on, needs to write).
//!
//! The guest arguments that configure the library OS (`ip=`, `net.*`, `vfs.*`,
//! `posix.*`, `ramfs`, `gate.*`) and this image (`nginx.*`) are not passed to Nginx;
//! the rest are, after `nginx` (e.g. `-g "error_log stderr notice;"`).
//!
//! Splits: 1 = everything; 2 = {app, vfs, blkdev} | {net, netdev}; 3 = {app} | {net,
//! netdev} | {vfs, blkdev}; 4 = {app} | {net} | {netdev} | {vfs, blkdev}; 5 = each
//! component alone.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_char;

use flexos_kernel::{Args, println};
use flexos_net::lockout::Limits;

flexos_kernel::main!(main);

// A web server holds many short connections at once (wrk keeps 30 open, a busy page
// more): 256 connections and handshakes in progress per port, with 64 KiB receive
// buffers (requests are small).
flexos_posix::server_image! {
    net_limits: Limits {
        conns: 256,
        syn_queue: 256,
        socket_rx: 64 << 10,
        ..Limits::DEFAULT
    }
}

unsafe extern "C" {
    /// nginx's `main` (src/core/nginx.c), unmodified.
    #[link_name = "main"]
    fn nginx_main(argc: i32, argv: *mut *mut c_char, envp: *mut *mut c_char) -> i32;
}

/// This image's own guest arguments.
struct Options {
    port: u16,
    access_log: bool,
}

fn options(args: &Args) -> Result<Options, String> {
    let mut o = Options {
        port: 80,
        access_log: false,
    };
    for arg in args.iter().filter(|a| a.starts_with("nginx.")) {
        match arg.split_once('=') {
            Some(("nginx.port", v)) => {
                o.port = v
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{arg}: a port is 1..65535"))?;
            }
            Some(("nginx.access_log", "on")) => o.access_log = true,
            Some(("nginx.access_log", "off")) => o.access_log = false,
            Some(("nginx.access_log", _)) => return Err(format!("{arg}: say on or off")),
            _ => {
                return Err(format!(
                    "{arg}: unknown (nginx.port=N, nginx.access_log=on|off)"
                ));
            }
        }
    }
    Ok(o)
}

/// The configuration used when the disk has no `/nginx.conf`.
fn default_conf(o: &Options) -> String {
    let access_log = if o.access_log { "/access.log" } else { "off" };
    format!(
        "# The nginx image's built-in configuration: a /nginx.conf on the disk replaces it.
master_process off;
daemon off;
worker_processes 1;
# One process, nothing to signal it: no pid file (the disk may be read-only).
pid /dev/null;
events {{ worker_connections 1024; }}
http {{
    types {{
        text/html html htm; text/plain txt; text/css css; application/javascript js;
        application/json json; image/png png; image/jpeg jpg jpeg; image/gif gif;
        image/svg+xml svg; application/pdf pdf;
    }}
    default_type application/octet-stream;
    sendfile off;
    # Open files stay open between requests: with the file system in another
    # compartment each open, fstat and close is a gate call.
    open_file_cache max=1000 inactive=20s;
    keepalive_timeout 65;
    access_log {access_log};
    server {{
        listen {port};
        root /;
        index index.html;
    }}
}}
",
        port = o.port
    )
}

fn main(args: &Args) -> i32 {
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => {
            println!("nginx: {e}");
            return 2;
        }
    };
    let conf: &'static [u8] = String::leak(default_conf(&opts)).as_bytes();
    let defaults: &'static [(&'static str, &'static [u8])] =
        Vec::leak(alloc::vec![("nginx.conf", conf)]);
    let mut argv = alloc::vec!["nginx"];
    argv.extend(
        args.iter()
            .filter(|a| !flexos_posix::is_system_arg(a) && !a.starts_with("nginx.")),
    );
    let system = flexos_posix::System {
        files: Some((&VFS_SERVER, VFS)),
        net: Some((&NET_SERVER, NET)),
        defaults,
    };
    flexos_posix::run(system, nginx_main, &argv, &["HOME=/", "PATH=/"])
}
