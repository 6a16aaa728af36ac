//! The storage components (`vfs` over `blkdev`) through the `fscheck` image, in each of
//! its default splits. Without a disk (`--disk`): the driver finds no device in its
//! boot info, the file system reports that it cannot mount, and the app gets the error
//! code through every gate (1, 2 and 3 compartments) and exits 1; no crash anywhere.
//! With `ramfs`: vfs's RAM file system, every step's exact output in every split, a
//! full cap, and a disk given anyway left untouched. (Files on a disk: sqlite.rs and
//! durability.rs, read back with the host's mtools.)

use flexos_e2e::{image, run, Outcome, TempDir};

const USAGE: &str =
    "usage: fscheck [ramfs [vfs.ramfs=MiB]] [write=NAME:TEXT | read=NAME | rm=NAME | ls]...";

fn fscheck(compartments: u32, guest_args: &[&str]) -> Outcome {
    fscheck_with(&["--compartments", &compartments.to_string()], guest_args)
}

fn fscheck_with(vmm_args: &[&str], guest_args: &[&str]) -> Outcome {
    let mut args: Vec<String> = vmm_args.iter().map(|s| s.to_string()).collect();
    args.push(image("fscheck").display().to_string());
    args.push("--".to_string());
    args.extend(guest_args.iter().map(|s| s.to_string()));
    run(args)
}

/// The console prefix of the app's lines in `compartments` compartments.
fn app(compartments: u32) -> &'static str {
    ["", "[app] ", "[app] "][compartments as usize - 1]
}

/// The console prefix of vfs's lines in `compartments` compartments.
fn vfs(compartments: u32) -> &'static str {
    ["", "[fs] ", "[vfs] "][compartments as usize - 1]
}

/// Prefixes each line with `prefix`.
fn lines(prefix: &str, lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| format!("{prefix}{l}")).collect()
}

#[track_caller]
fn assert_lines(out: &Outcome, want: &[String]) {
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    out.assert_stdout_lines(&want);
}

#[test]
fn ramfs_serves_every_step_in_every_split() {
    // Names fold ASCII case as on FAT, `ls` lists in creation order with sizes, and a
    // deleted file is gone for the next step; no disk, and blkdev is never called.
    let steps = [
        "ramfs",
        "write=a.txt:hello",
        "write=B.db:xyz",
        "write=empty:",
        "read=A.TXT",
        "ls",
        "write=b.DB:rewritten",
        "rm=a.txt",
        "ls",
        "read=empty",
        "read=a.txt",
    ];
    for n in 1..=3u32 {
        let out = fscheck(n, &steps);
        out.assert_status(1).assert_stderr_empty();
        assert_lines(
            &out,
            &lines(
                app(n),
                &[
                    "fscheck: wrote 5 bytes to a.txt",
                    "fscheck: wrote 3 bytes to B.db",
                    "fscheck: wrote 0 bytes to empty",
                    "fscheck: read A.TXT (5 bytes): hello",
                    "fscheck: ls",
                    "a.txt\t5",
                    "B.db\t3",
                    "empty\t0",
                    "fscheck: wrote 9 bytes to b.DB",
                    "fscheck: deleted a.txt",
                    "fscheck: ls",
                    "B.db\t9",
                    "empty\t0",
                    "fscheck: read empty (0 bytes): ",
                    "fscheck: open failed: no such file (code -2)",
                ],
            ),
        );
    }
}

#[test]
fn ramfs_leaves_a_given_disk_alone_and_says_so_once() {
    // Not even a FAT volume: with ramfs the disk is never read, so this is no error,
    // and its bytes are the same afterwards.
    let dir = TempDir::new("fscheck-ramfs-disk");
    let bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let img = dir.write("disk.img", &bytes);
    let disk = img.to_str().expect("UTF-8 temp path");
    for n in 1..=3u32 {
        let out = fscheck_with(
            &["-c", &n.to_string(), "--disk", disk],
            &["write=f:1", "ramfs", "rm=f", "ls"],
        );
        out.assert_status(0).assert_stderr_empty();
        let mut want = vec![format!("{}vfs: ramfs: the disk is not used", vfs(n))];
        want.extend(lines(
            app(n),
            &[
                "fscheck: wrote 1 bytes to f",
                "fscheck: deleted f",
                "fscheck: ls",
            ],
        ));
        assert_lines(&out, &want);
        assert!(
            std::fs::read(&img).unwrap() == bytes,
            "{n}: the disk changed"
        );
    }
}

#[test]
fn a_full_ramfs_is_no_space() {
    for n in 1..=3u32 {
        // A cap of 0 holds empty files only.
        let out = fscheck(
            n,
            &["ramfs", "vfs.ramfs=0", "write=e:", "write=x:data", "ls"],
        );
        out.assert_status(1).assert_stderr_empty();
        assert_lines(
            &out,
            &lines(
                app(n),
                &[
                    "fscheck: wrote 0 bytes to e",
                    "fscheck: write failed: no space left on the file system (code -28)",
                ],
            ),
        );
    }
    // A bad size is vfs's to report; it goes on with its default (half its heap).
    let out = fscheck(2, &["vfs.ramfs=1M", "ramfs", "write=x:data"]);
    out.assert_status(0).assert_stderr_empty();
    assert_lines(
        &out,
        &[
            "[fs] vfs: bad vfs.ramfs=1M: want MiB (0..=1048576); using half the heap".into(),
            "[app] fscheck: wrote 4 bytes to x".into(),
        ],
    );
}

#[test]
fn without_a_disk_every_split_reports_a_clean_error() {
    // (compartments, the console prefix of blkdev's, vfs's and app's compartment)
    let splits = [
        (1, ["", "", ""]),
        (2, ["[fs] ", "[fs] ", "[app] "]),
        (3, ["[blkdev] ", "[vfs] ", "[app] "]),
    ];
    for (n, [blk, vfs, app]) in splits {
        let out = fscheck(n, &["write=a.txt:hello", "ls"]);
        out.assert_status(1)
            .assert_stdout_lines(&[
                &format!("{blk}blkdev: no block device attached (run with --disk PATH)"),
                &format!("{vfs}vfs: cannot mount the disk: no block device"),
                &format!("{app}fscheck: open failed: no block device (code -19)"),
            ])
            .assert_stderr_empty();
    }
}

#[test]
fn bad_names_are_refused_by_vfs_before_it_touches_the_disk() {
    // vfs checks a name it got through the gate before mounting: a path separator,
    // `..`, a control character or an over-long name is an invalid argument (-22), in
    // every split, and neither vfs nor blkdev prints anything.
    let long = format!("read={}", "n".repeat(256));
    let cases = [
        "read=dir/file",
        "read=..",
        "read=a\tb",
        "write=a\\b:x",
        long.as_str(),
    ];
    let prefix = ["", "[app] ", "[app] "];
    for n in 1..=3u32 {
        for case in cases {
            fscheck(n, &[case])
                .assert_status(1)
                .assert_stdout_lines(&[&format!(
                    "{}fscheck: open failed: invalid argument (code -22)",
                    prefix[n as usize - 1]
                )])
                .assert_stderr_empty();
        }
        fscheck(n, &["rm=x/y"])
            .assert_status(1)
            .assert_stdout_lines(&[&format!(
                "{}fscheck: delete failed: invalid argument (code -22)",
                prefix[n as usize - 1]
            )])
            .assert_stderr_empty();
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let usage = "fscheck: bad argument 'write=nocolon': want write=NAME:TEXT";
    fscheck(1, &["write=nocolon"])
        .assert_status(2)
        .assert_stdout_lines(&[usage])
        .assert_stderr_empty();
    fscheck(1, &["format"])
        .assert_status(2)
        .assert_stdout_lines(&[&format!("fscheck: unknown argument 'format'; {USAGE}")])
        .assert_stderr_empty();
    // No step: nothing to do, with or without the settings.
    for args in [&[][..], &["ramfs"][..], &["ramfs", "vfs.ramfs=8"][..]] {
        fscheck(1, args)
            .assert_status(2)
            .assert_stdout_lines(&[USAGE])
            .assert_stderr_empty();
    }
    fscheck(1, &["vfs.ramfs=8", "ls"])
        .assert_status(2)
        .assert_stdout_lines(&[&format!("fscheck: vfs.ramfs= needs ramfs; {USAGE}")])
        .assert_stderr_empty();
}
