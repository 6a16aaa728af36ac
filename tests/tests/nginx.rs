//! Unmodified Nginx 1.22 on the POSIX layer, end to end, with stock clients only (curl,
//! wrk) and mtools: exact bytes of small and 1 MiB files, Nginx's own 404/403/400/405
//! pages, 100 requests on one kept-alive connection, 200 connections at once, a client
//! that stops reading mid-response, malformed requests, a read-only disk, a
//! configuration and an access log on the disk; in one and two compartments.
//!
//! Each test makes its own network namespace with a tap at 10.0.0.1; the guest is
//! 10.0.0.2 (see [`flexos_e2e::nginx`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use flexos_e2e::netns::{reset_on_close, NetNs, GUEST_IP};
use flexos_e2e::nginx::{disk_with, start};
use flexos_e2e::{require_tool, run_program, TempDir};

/// A 612-byte index page (the size of the page FlexOS measures): any bytes do, the
/// test compares them one for one.
fn index_page() -> Vec<u8> {
    pattern(612, 612)
}

/// `len` bytes that no two offsets of the file share by accident (a byte swapped or
/// a chunk repeated shows).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const MIB: usize = 1 << 20;

/// GET `path` and the bytes of the body, via curl into a file.
fn fetch(ns: &NetNs, dir: &TempDir, base: &str, path: &str) -> Vec<u8> {
    let out = dir.path().join("fetched");
    let _ = std::fs::remove_file(&out);
    ns.run_program(
        "curl",
        [
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "-o",
            out.to_str().unwrap(),
            &format!("{base}{path}"),
        ],
    )
    .assert_status(0);
    std::fs::read(&out).unwrap()
}

/// Sends `request` on a new connection, half-closes, and reads the answer to its end.
fn raw(ns: &NetNs, request: &[u8]) -> String {
    let request = request.to_vec();
    ns.enter(move || {
        let mut s = TcpStream::connect((GUEST_IP, 80)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // The server may answer and close before it has read everything (a header too
        // large): a write that finds the connection reset is part of the answer.
        let _ = s.write_all(&request);
        let _ = s.shutdown(Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
}

fn serves_exact_bytes_and_keeps_alive(compartments: u32, tag: &str) {
    let dir = TempDir::new(tag);
    let index = index_page();
    let big = pattern(MIB, compartments);
    let img = disk_with(
        &dir,
        16,
        &[
            ("index.html", &index),
            ("big.bin", &big),
            ("notes.txt", b"plain text\n"),
        ],
    );
    let ns = NetNs::with_tap(tag);
    let nginx = start(&ns, compartments, &img, false, 80, &[]);
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/"), index);
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/index.html"), index);
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/big.bin"), big);
    // Headers as Nginx writes them: its name and version, the type from the built-in
    // table, the length.
    let head = nginx.curl(&ns, "/notes.txt", &["-D", "-", "-o", "/dev/null"]);
    head.assert_status(0);
    assert!(head.stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{head:?}");
    assert!(head.stdout.contains("Server: nginx/1.22.1\r\n"), "{head:?}");
    assert!(
        head.stdout.contains("Content-Type: text/plain\r\n"),
        "{head:?}"
    );
    assert!(head.stdout.contains("Content-Length: 11\r\n"), "{head:?}");
    // A missing file, and a directory that does not exist: Nginx's own 404 page.
    for path in ["/missing.html", "/nodir/", "/nodir/index.html"] {
        assert_eq!(nginx.status_of(&ns, path), "404", "{path}");
    }
    let missing = nginx.curl(&ns, "/missing.html", &[]);
    assert!(
        missing.stdout.contains("<title>404 Not Found</title>")
            && missing.stdout.contains("<center>nginx/1.22.1</center>"),
        "{missing:?}"
    );
    // 100 requests on one connection: curl reuses it, so only the first connects.
    let url = format!("{}/index.html", nginx.base);
    let mut args = vec![
        "-sS",
        "--max-time",
        "60",
        "-w",
        "%{http_code} %{num_connects}\\n",
    ];
    for _ in 0..100 {
        args.extend_from_slice(&["-o", "/dev/null", &url]);
    }
    let kept = ns.run_program("curl", &args);
    kept.assert_status(0);
    let lines: Vec<&str> = kept.stdout.lines().collect();
    assert_eq!(lines.len(), 100, "{kept:?}");
    assert_eq!(lines[0], "200 1", "{kept:?}");
    assert!(lines[1..].iter().all(|l| *l == "200 0"), "{kept:?}");
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
}

#[test]
fn serves_exact_bytes_and_keeps_alive_in_one_compartment() {
    serves_exact_bytes_and_keeps_alive(1, "ngx1");
}

#[test]
fn serves_exact_bytes_and_keeps_alive_across_two_compartments() {
    serves_exact_bytes_and_keeps_alive(2, "ngx2");
}

#[test]
fn a_read_only_disk_serves_and_a_directory_without_index_is_forbidden() {
    let dir = TempDir::new("ngx-ro");
    let img = disk_with(&dir, 16, &[("only.txt", b"read-only disk\n")]);
    let before = std::fs::read(&img).unwrap();
    let ns = NetNs::with_tap("ngxro");
    let nginx = start(&ns, 1, &img, true, 80, &[]);
    assert_eq!(
        fetch(&ns, &dir, &nginx.base, "/only.txt"),
        b"read-only disk\n"
    );
    // No index.html in the directory and no autoindex: Nginx's 403, as on Linux.
    assert_eq!(nginx.status_of(&ns, "/"), "403");
    let (status, lines, _) = nginx.stop();
    assert_eq!(status, 143);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("directory index of \"/\" is forbidden")),
        "{lines:?}"
    );
    // Nothing was written: the disk is byte for byte what it was.
    assert!(
        std::fs::read(&img).unwrap() == before,
        "the read-only disk changed"
    );
}

#[test]
fn two_hundred_connections_at_once() {
    require_tool("wrk", "wrk");
    let dir = TempDir::new("ngx-c200");
    let index = index_page();
    let img = disk_with(&dir, 16, &[("index.html", &index)]);
    let ns = NetNs::with_tap("ngxc200");
    let nginx = start(&ns, 1, &img, false, 80, &[]);
    let url = format!("{}/index.html", nginx.base);
    let wrk = ns.run_program(
        "wrk",
        ["-t", "1", "-c", "200", "-d", "3", "--timeout", "10", &url],
    );
    wrk.assert_status(0);
    // wrk names every failure: connect/read/write/timeout errors, non-2xx answers.
    assert!(!wrk.stdout.contains("Socket errors"), "{wrk:?}");
    assert!(!wrk.stdout.contains("Non-2xx"), "{wrk:?}");
    let requests: u64 = wrk
        .stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no request count: {wrk:?}"));
    assert!(requests >= 200, "{wrk:?}");
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/"), index);
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
}

fn a_stalled_reader_does_not_stall_others(compartments: u32, tag: &str) {
    let dir = TempDir::new(tag);
    let big = pattern(MIB, 7);
    let index = index_page();
    let img = disk_with(&dir, 16, &[("big.bin", &big), ("index.html", &index)]);
    let ns = NetNs::with_tap(tag);
    let nginx = start(&ns, compartments, &img, false, 80, &[]);
    // A client asks for 1 MiB, reads the first bytes, then reads nothing more (its
    // window closes; Nginx waits for room on that connection).
    let stalled = ns.enter(|| {
        let mut s = TcpStream::connect((GUEST_IP, 80)).unwrap();
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: guest\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 4096];
        s.read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
        s
    });
    // Meanwhile others are served in full.
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/big.bin"), big);
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/"), index);
    // A client that resets its connection mid-response.
    ns.enter(|| {
        let mut s = TcpStream::connect((GUEST_IP, 80)).unwrap();
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: guest\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 1024];
        s.read_exact(&mut first).unwrap();
        reset_on_close(&s);
    });
    drop(stalled);
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/big.bin"), big);
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
}

#[test]
fn a_stalled_reader_does_not_stall_others_in_one_compartment() {
    a_stalled_reader_does_not_stall_others(1, "ngxst1");
}

#[test]
fn a_stalled_reader_does_not_stall_others_across_two_compartments() {
    a_stalled_reader_does_not_stall_others(2, "ngxst2");
}

#[test]
fn malformed_requests_get_nginxs_own_answers_and_it_keeps_serving() {
    let dir = TempDir::new("ngx-bad");
    let index = index_page();
    let img = disk_with(&dir, 16, &[("index.html", &index)]);
    let ns = NetNs::with_tap("ngxbad");
    let nginx = start(&ns, 1, &img, false, 80, &[]);
    // A 64 KiB header: larger than large_client_header_buffers (4 x 8k).
    let mut huge = b"GET / HTTP/1.1\r\nHost: guest\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + 64 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let answer = raw(&ns, &huge);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:.300}"
    );
    assert!(
        answer.contains("Request Header Or Cookie Too Large"),
        "{answer:.600}"
    );
    // A method Nginx does not serve files for, and one that is not a method at all.
    let answer = raw(&ns, b"BREW /index.html HTTP/1.1\r\nHost: guest\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 405 Not Allowed\r\n"),
        "{answer:.300}"
    );
    let answer = raw(&ns, b"get / HTTP/1.1\r\nHost: guest\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:.300}"
    );
    // A request line cut short, then the end of the line: 400; cut short and the
    // connection closed: no answer, as from Nginx on Linux.
    let answer = raw(&ns, b"GET /index.html HTT\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:.300}"
    );
    assert_eq!(raw(&ns, b"GET /index.ht"), "");
    // Binary garbage.
    let answer = raw(&ns, &[0u8, 0xff, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n']);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:.300}"
    );
    // And the server still serves.
    assert_eq!(fetch(&ns, &dir, &nginx.base, "/"), index);
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
}

#[test]
fn a_configuration_on_the_disk_replaces_the_built_in_one_and_logs_to_the_disk() {
    let dir = TempDir::new("ngx-conf");
    let conf = b"master_process off; daemon off; worker_processes 1; pid /nginx.pid;
events { worker_connections 64; }
http {
    access_log /access.log;
    sendfile off;
    server { listen 8080; root /; add_header X-Conf from-disk; }
}
";
    let img = disk_with(&dir, 16, &[("nginx.conf", conf), ("a.txt", b"A\n")]);
    let ns = NetNs::with_tap("ngxconf");
    let nginx = start(&ns, 2, &img, false, 8080, &[]);
    let head = nginx.curl(&ns, "/a.txt", &["-D", "-"]);
    head.assert_status(0);
    assert!(head.stdout.contains("X-Conf: from-disk\r\n"), "{head:?}");
    assert!(head.stdout.ends_with("\r\n\r\nA\n"), "{head:?}");
    assert_eq!(nginx.status_of(&ns, "/nothere"), "404");
    // Served one at a time: this answer means the lines before it are written.
    assert_eq!(nginx.status_of(&ns, "/a.txt"), "200");
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
    // The access log and the pid file are on the disk, as the configuration says.
    let log = run_program("mtype", ["-i", img.to_str().unwrap(), "::/access.log"]);
    log.assert_status(0);
    let lines: Vec<&str> = log.stdout.lines().collect();
    assert!(lines.len() >= 2, "{log:?}");
    assert!(
        lines[0].starts_with("10.0.0.1 - - [")
            && lines[0].contains("\"GET /a.txt HTTP/1.1\" 200 2 "),
        "{log:?}"
    );
    assert!(
        lines[1].contains("\"GET /nothere HTTP/1.1\" 404 "),
        "{log:?}"
    );
    let pid = run_program("mtype", ["-i", img.to_str().unwrap(), "::/nginx.pid"]);
    pid.assert_status(0);
    assert_eq!(pid.stdout.trim(), "1", "{pid:?}");
}

#[test]
fn the_built_in_configuration_logs_to_the_disk_when_asked() {
    let dir = TempDir::new("ngx-log");
    let img = disk_with(&dir, 16, &[("a.txt", b"A\n")]);
    let ns = NetNs::with_tap("ngxlog");
    let nginx = start(
        &ns,
        1,
        &img,
        false,
        8081,
        &["nginx.port=8081", "nginx.access_log=on"],
    );
    assert_eq!(nginx.status_of(&ns, "/a.txt"), "200");
    // Nginx serves one request at a time: the answer to this one means the line of
    // the one before is written.
    assert_eq!(nginx.status_of(&ns, "/a.txt"), "200");
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
    let log = run_program("mtype", ["-i", img.to_str().unwrap(), "::/access.log"]);
    log.assert_status(0);
    assert!(
        log.stdout.contains("\"GET /a.txt HTTP/1.1\" 200 2 "),
        "{log:?}"
    );
    // Without the argument, no log is written.
    let dir2 = TempDir::new("ngx-nolog");
    let img2 = disk_with(&dir2, 16, &[("a.txt", b"A\n")]);
    let nginx = start(&ns, 1, &img2, false, 80, &[]);
    assert_eq!(nginx.status_of(&ns, "/a.txt"), "200");
    let (status, _, _) = nginx.stop();
    assert_eq!(status, 143);
    let dir_listing = run_program("mdir", ["-b", "-i", img2.to_str().unwrap(), "::/"]);
    assert!(
        !dir_listing.stdout.to_lowercase().contains("access.log"),
        "{dir_listing:?}"
    );
}

#[test]
fn a_bad_image_argument_is_named() {
    let dir = TempDir::new("ngx-arg");
    let img = disk_with(&dir, 16, &[]);
    let ns = NetNs::with_tap("ngxarg");
    let out = ns.run_monitor([
        "--net",
        &format!("tap={}", flexos_e2e::netns::TAP),
        "--disk",
        img.to_str().unwrap(),
        flexos_e2e::image("nginx").to_str().unwrap(),
        "--",
        &format!("ip={GUEST_IP}/24"),
        "nginx.port=0",
    ]);
    assert!(
        out.stdout
            .contains("nginx: nginx.port=0: a port is 1..65535"),
        "{out:?}"
    );
    assert_ne!(out.status, 0, "{out:?}");
}
