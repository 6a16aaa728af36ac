//! Unmodified Redis 7 on the POSIX layer, end to end, with the stock Redis tools only
//! (redis-cli, redis-benchmark, redis-check-rdb) and mtools: every data type's
//! commands, binary-safe values, expiry, 50 clients at once, a client killed in the
//! middle of a pipeline, garbage on the port, and SAVE to the disk, checked by the
//! host's redis-check-rdb and loaded again by a new boot.
//!
//! Each test makes its own network namespace with a tap at 10.0.0.1; the guest is
//! 10.0.0.2 (see [`flexos_e2e::redis`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;

use flexos_e2e::netns::{reset_on_close, NetNs, GUEST_IP};
use flexos_e2e::redis::{cli, reply, shutdown, with_redis};
use flexos_e2e::{mkdisk, repo_root, require_tool, run_program, run_program_for, TempDir};

#[test]
fn every_data_type_answers_as_redis_does() {
    let ns = NetNs::with_tap("rtypes");
    let (guest, ()) = with_redis(&ns, 1, None, &[], |_| {
        let r = |args: &[&str]| reply(&ns, args);
        assert_eq!(r(&["PING"]), ["PONG"]);
        assert_eq!(r(&["SET", "greeting", "hello world"]), ["OK"]);
        assert_eq!(r(&["GET", "greeting"]), ["hello world"]);
        assert_eq!(r(&["APPEND", "greeting", "!"]), ["12"]);
        assert_eq!(r(&["STRLEN", "greeting"]), ["12"]);
        assert_eq!(r(&["INCR", "n"]), ["1"]);
        assert_eq!(r(&["INCRBY", "n", "41"]), ["42"]);
        assert_eq!(r(&["RPUSH", "list", "a", "b", "c"]), ["3"]);
        assert_eq!(r(&["LRANGE", "list", "0", "-1"]), ["a", "b", "c"]);
        assert_eq!(r(&["LPOP", "list"]), ["a"]);
        assert_eq!(r(&["HSET", "hash", "f1", "v1", "f2", "v2"]), ["2"]);
        assert_eq!(r(&["HGET", "hash", "f2"]), ["v2"]);
        assert_eq!(r(&["HLEN", "hash"]), ["2"]);
        assert_eq!(r(&["SADD", "set", "x", "y", "x"]), ["2"]);
        assert_eq!(r(&["SISMEMBER", "set", "y"]), ["1"]);
        assert_eq!(r(&["SCARD", "set"]), ["2"]);
        assert_eq!(
            r(&["ZADD", "z", "2", "two", "1", "one", "3", "three"]),
            ["3"]
        );
        assert_eq!(
            r(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            ["one", "1", "two", "2", "three", "3"]
        );
        assert_eq!(r(&["ZSCORE", "z", "three"]), ["3"]);
        assert_eq!(r(&["DBSIZE"]), ["6"]);
        assert_eq!(r(&["TYPE", "z"]), ["zset"]);
        // The server sees the client's real address (accept4 and getpeername).
        let me = r(&["CLIENT", "LIST"]);
        assert!(me[0].contains(" addr=10.0.0.1:"), "{me:?}");
        assert!(me[0].contains(" laddr=10.0.0.2:6379 "), "{me:?}");
        // An error reply is Redis's own.
        let wrong = cli(&ns, &["LPUSH", "greeting", "x"]);
        assert!(
            wrong
                .stdout
                .contains("WRONGTYPE Operation against a key holding the wrong kind of value"),
            "{wrong:?}"
        );
        shutdown(&ns, false);
    });
    guest.assert_status(0);
}

#[test]
fn binary_values_come_back_byte_for_byte_and_keys_expire() {
    let ns = NetNs::with_tap("rbin");
    let dir = TempDir::new("redis-bin");
    let all: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let input: PathBuf = dir.path().join("value.bin");
    std::fs::write(&input, &all).unwrap();
    let (guest, ()) = with_redis(&ns, 2, None, &[], |_| {
        // redis-cli -x takes the last argument from stdin, bytes as they are.
        let set = ns
            .command(
                "sh",
                [
                    "-c",
                    &format!("redis-cli -h {GUEST_IP} -x SET bin < {}", input.display()),
                ],
            )
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK", "{set:?}");
        // --raw prints the value's bytes, then a newline.
        let get = cli(&ns, &["--raw", "GET", "bin"]);
        get.assert_status(0);
        let out = ns
            .command("redis-cli", ["-h", GUEST_IP, "--raw", "GET", "bin"])
            .output()
            .unwrap();
        assert_eq!(out.stdout.len(), all.len() + 1);
        assert_eq!(&out.stdout[..all.len()], &all[..]);
        assert_eq!(reply(&ns, &["STRLEN", "bin"]), ["70000"]);

        assert_eq!(reply(&ns, &["SET", "k", "v", "EX", "100"]), ["OK"]);
        let ttl: i64 = reply(&ns, &["TTL", "k"])[0].parse().unwrap();
        assert!((98..=100).contains(&ttl), "TTL {ttl}");
        assert_eq!(reply(&ns, &["PERSIST", "k"]), ["1"]);
        assert_eq!(reply(&ns, &["TTL", "k"]), ["-1"]);
        // A key that expires: gone once its time is up, as Redis's clock says.
        assert_eq!(reply(&ns, &["SET", "short", "v", "PX", "300"]), ["OK"]);
        loop {
            match reply(&ns, &["PTTL", "short"])[0].as_str() {
                "-2" => break,
                ms => assert!(ms.parse::<i64>().unwrap() <= 300, "PTTL {ms}"),
            }
        }
        assert_eq!(reply(&ns, &["EXISTS", "short"]), ["0"]);
        shutdown(&ns, false);
    });
    guest.assert_status(0);
}

/// A reply far larger than the socket's send buffer, in one compartment and in two:
/// Redis polls for POLLOUT between partial writes. In one, the stack shares its vCPU
/// and must still get to send (a 100 KB GET used to spin the guest for ever, deaf even
/// to ARP); in two, writes queue in the POSIX layer and go over in batches. A client
/// that asks for the value and never reads it must not hold up the others.
#[test]
fn a_four_megabyte_value_goes_in_and_comes_back() {
    let ns = NetNs::with_tap("rbig");
    let dir = TempDir::new("redis-big");
    let all: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let input: PathBuf = dir.path().join("value.bin");
    std::fs::write(&input, &all).unwrap();
    for compartments in [1, 2] {
        let (guest, ()) = with_redis(&ns, compartments, None, &[], |_| {
            let set = ns
                .command(
                    "sh",
                    [
                        "-c",
                        &format!("redis-cli -h {GUEST_IP} -x SET big < {}", input.display()),
                    ],
                )
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK", "{set:?}");
            // A client that asks and never reads: its reply fills every buffer on
            // the way and waits there.
            let stalled = ns.enter(|| {
                let mut s = TcpStream::connect((GUEST_IP, 6379)).unwrap();
                s.write_all(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n").unwrap();
                s
            });
            for _ in 0..2 {
                let out = ns
                    .command("redis-cli", ["-h", GUEST_IP, "--raw", "GET", "big"])
                    .output()
                    .unwrap();
                assert_eq!(
                    out.stdout.len(),
                    all.len() + 1,
                    "{compartments} compartment(s)"
                );
                assert!(
                    out.stdout[..all.len()] == all[..],
                    "the value came back changed ({compartments} compartment(s))"
                );
            }
            assert_eq!(reply(&ns, &["PING"]), ["PONG"]);
            drop(stalled);
            shutdown(&ns, false);
        });
        guest.assert_status(0);
    }
}

/// `CONFIG SET bind` closes Redis's listening sockets and listens again on the same
/// port: the port must be free for it (it answered "Failed to bind" and the server
/// stopped accepting), twice over, and the server must keep serving new clients.
#[test]
fn config_set_bind_listens_again_on_the_same_port() {
    let ns = NetNs::with_tap("rbind");
    let (guest, ()) = with_redis(&ns, 2, None, &[], |_| {
        for _ in 0..2 {
            assert_eq!(reply(&ns, &["CONFIG", "SET", "bind", "* -::*"]), ["OK"]);
            assert_eq!(reply(&ns, &["PING"]), ["PONG"]);
        }
        assert_eq!(reply(&ns, &["CONFIG", "GET", "bind"]), ["bind", "* -::*"]);
        shutdown(&ns, false);
    });
    guest.assert_status(0);
}

#[test]
fn fifty_clients_at_once_count_every_increment() {
    require_tool("redis-benchmark", "redis-tools");
    let ns = NetNs::with_tap("r50");
    let (guest, ()) = with_redis(&ns, 2, None, &[], |_| {
        // Without -r the key is the literal "counter:__rand_int__": one counter that
        // every client increments.
        let bench = ns.run_program(
            "redis-benchmark",
            [
                "-h", GUEST_IP, "-c", "50", "-n", "20000", "-t", "incr", "-q",
            ],
        );
        bench.assert_status(0);
        assert_eq!(reply(&ns, &["GET", "counter:__rand_int__"]), ["20000"]);
        let clients = reply(&ns, &["INFO", "stats"]);
        let total: u64 = clients
            .iter()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(total >= 51, "{clients:?}");
        shutdown(&ns, false);
    });
    guest.assert_status(0);
}

#[test]
fn a_client_killed_mid_pipeline_leaves_the_server_serving() {
    let ns = NetNs::with_tap("rkill");
    let (guest, ()) = with_redis(&ns, 2, None, &[], |_| {
        // 1000 pipelined SETs, the last one cut in half, then a reset: the server sees
        // a connection die in the middle of a command.
        ns.enter(|| {
            let mut s = TcpStream::connect((GUEST_IP, 6379)).unwrap();
            let mut pipeline = Vec::new();
            for i in 0..1000 {
                pipeline.extend_from_slice(
                    format!("*3\r\n$3\r\nSET\r\n$5\r\nk{i:04}\r\n$1\r\nv\r\n").as_bytes(),
                );
            }
            pipeline.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf");
            s.write_all(&pipeline).unwrap();
            // SO_LINGER 0: close sends a RST, as a killed client's kernel does when
            // replies are still unread.
            reset_on_close(&s);
            drop(s);
        });
        assert_eq!(reply(&ns, &["PING"]), ["PONG"]);
        assert_eq!(reply(&ns, &["SET", "after", "1"]), ["OK"]);
        assert_eq!(reply(&ns, &["GET", "after"]), ["1"]);
        let size: u64 = reply(&ns, &["DBSIZE"])[0].parse().unwrap();
        // Every complete SET before the reset may or may not have been read; the cut
        // one never took effect.
        assert!((1..=1001).contains(&size), "DBSIZE {size}");
        assert_eq!(reply(&ns, &["EXISTS", "half"]), ["0"]);
        shutdown(&ns, false);
    });
    guest.assert_status(0);
}

#[test]
fn garbage_on_the_port_gets_redis_errors_and_the_server_keeps_serving() {
    let ns = NetNs::with_tap("rjunk");
    let (guest, ()) = with_redis(&ns, 1, None, &[], |_| {
        ns.enter(|| {
            // An oversized bulk length: Redis's own protocol error, then it closes.
            let mut s = TcpStream::connect((GUEST_IP, 6379)).unwrap();
            s.write_all(b"*1\r\n$9999999999999\r\n").unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert_eq!(answer, "-ERR Protocol error: invalid bulk length\r\n");
            // Random bytes that are not a command.
            let mut s = TcpStream::connect((GUEST_IP, 6379)).unwrap();
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let junk: Vec<u8> = (0..4096)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Avoid the two bytes that start a valid request.
                    match seed as u8 {
                        b'*' | b'$' => b'?',
                        b => b,
                    }
                })
                .collect();
            s.write_all(&junk).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).unwrap();
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("-ERR"), "{text:?}");
        });
        assert_eq!(reply(&ns, &["PING"]), ["PONG"]);
        shutdown(&ns, false);
    });
    guest.assert_status(0);
}

#[test]
fn debug_reload_reads_back_each_save_of_the_same_file() {
    // DEBUG RELOAD saves dump.rdb (a new file renamed over the old) and loads it
    // again in the same run: each load must see the save just made, never bytes the
    // POSIX layer kept from an earlier read of that name.
    require_tool("mcopy", "mtools");
    let dir = TempDir::new("redis-reload");
    let img = mkdisk(&dir, 32);
    let ns = NetNs::with_tap("rreload");
    let (guest, ()) = with_redis(
        &ns,
        3,
        Some(&img),
        &["--enable-debug-command", "yes"],
        |_| {
            for value in ["first", "second", "third"] {
                assert_eq!(reply(&ns, &["SET", "k", value]), ["OK"]);
                assert_eq!(reply(&ns, &["DEBUG", "RELOAD"]), ["OK"]);
                assert_eq!(reply(&ns, &["GET", "k"]), [value]);
            }
            shutdown(&ns, false);
        },
    );
    guest.assert_status(0);
}

#[test]
fn save_writes_a_dump_the_host_accepts_and_a_new_boot_loads() {
    require_tool("redis-check-rdb", "redis-tools");
    require_tool("mcopy", "mtools");
    let dir = TempDir::new("redis-save");
    let img = mkdisk(&dir, 32);
    let ns = NetNs::with_tap("rsave");
    let (guest, ()) = with_redis(&ns, 3, Some(&img), &[], |_| {
        assert_eq!(reply(&ns, &["RPUSH", "l", "1", "2", "3"]), ["3"]);
        assert_eq!(reply(&ns, &["SET", "s", "kept"]), ["OK"]);
        assert_eq!(reply(&ns, &["HSET", "h", "a", "b"]), ["1"]);
        assert_eq!(reply(&ns, &["SAVE"]), ["OK"]);
        shutdown(&ns, false);
    });
    guest.assert_status(0);
    // The host's tools read the dump out of the FAT volume and accept it.
    let dump = dir.path().join("dump.rdb");
    run_program(
        "mcopy",
        [
            "-i",
            img.to_str().unwrap(),
            "::/dump.rdb",
            dump.to_str().unwrap(),
        ],
    )
    .assert_status(0);
    let check = run_program("redis-check-rdb", [dump.to_str().unwrap()]);
    check.assert_status(0);
    assert!(check.stdout.contains("RDB looks OK!"), "{check:?}");
    assert!(
        check.stdout.contains("keys read: 3") || check.stdout.contains("3 keys"),
        "{check:?}"
    );
    // A new boot on the same disk (another split) loads it.
    let (guest, ()) = with_redis(&ns, 2, Some(&img), &[], |lines| {
        let _ = lines;
        assert_eq!(reply(&ns, &["DBSIZE"]), ["3"]);
        assert_eq!(reply(&ns, &["LRANGE", "l", "0", "-1"]), ["1", "2", "3"]);
        assert_eq!(reply(&ns, &["GET", "s"]), ["kept"]);
        shutdown(&ns, false);
    });
    guest.assert_status(0);
    assert!(guest.stdout.contains("DB loaded from disk"), "{guest:?}");
}

/// scripts/redis-suite runs Redis's own tests against the guest: one file, in its own
/// namespace (flexos-netns), with the per-file table, the report and the JSON.
#[test]
fn redis_own_test_suite_passes_a_file_against_the_guest() {
    require_tool("tclsh", "tcl");
    let dir = TempDir::new("redis-suite");
    let script = repo_root().join("scripts/redis-suite");
    let out = run_program_for(
        script.to_str().unwrap(),
        [
            "--out",
            dir.path().to_str().unwrap(),
            "--timeout",
            "60",
            "unit/type/incr",
        ],
        std::time::Duration::from_secs(300),
    );
    out.assert_status(0);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("unit/type/incr "))
        .unwrap_or_else(|| panic!("no row for the file: {out:?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..], ["25", "0", "0", "0"], "{row}");
    assert!(
        out.stdout
            .contains("passed 25 of 25 tests that ran (100.0%); goal 95%"),
        "{out:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], 25);
    assert_eq!(report["failed"], 0);
}
