//! The storage components (`vfs` over `blkdev`) through the `fscheck` image, in each of
//! its default splits. Until the monitor attaches a disk (`--disk`), what can be checked
//! end to end is the path without one: the driver finds no device in its boot info, the
//! file system reports that it cannot mount, and the app gets the error code through
//! every gate (1, 2 and 3 compartments) and exits 1; no crash anywhere.

use flexos_e2e::{image, run, Outcome};

fn fscheck(compartments: u32, guest_args: &[&str]) -> Outcome {
    let n = compartments.to_string();
    let mut args = vec![
        "--compartments".to_string(),
        n,
        image("fscheck").display().to_string(),
        "--".to_string(),
    ];
    args.extend(guest_args.iter().map(|s| s.to_string()));
    run(args)
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
        .assert_stdout_lines(&[
            "fscheck: unknown argument 'format'; usage: fscheck [write=NAME:TEXT | read=NAME | rm=NAME | ls]...",
        ])
        .assert_stderr_empty();
    fscheck(1, &[])
        .assert_status(2)
        .assert_stdout_lines(&["usage: fscheck [write=NAME:TEXT | read=NAME | rm=NAME | ls]..."])
        .assert_stderr_empty();
}
