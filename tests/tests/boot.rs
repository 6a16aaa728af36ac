//! Clean boots of the `hello` image: exact console output, argument passing, the guest's
//! exit code becoming the monitor's exit status (`exit=N`), the guest's own rejection of
//! bad `exit=`/`crash=` values, `--timings` lines, `--mem` at its bounds, and `--help` /
//! `--version`.

use flexos_e2e::{hello, image, run, Outcome, HELLO_LINE};

/// Boots hello with `guest_args` and checks a clean exit with `status`, `args:` echoing
/// `echo`, any `extra` stdout lines, and nothing on stderr.
#[track_caller]
fn clean_run(guest_args: &[&str], status: i32, echo: &str, extra: &[&str]) -> Outcome {
    let out = hello(guest_args);
    let args_line = format!("args: {echo}");
    let mut lines = vec![HELLO_LINE, args_line.as_str()];
    lines.extend_from_slice(extra);
    out.assert_status(status)
        .assert_stdout_lines(&lines)
        .assert_stderr_empty();
    out
}

#[test]
fn no_arguments() {
    clean_run(&[], 0, "(none)", &[]);
}

#[test]
fn no_double_dash_is_the_same_as_no_arguments() {
    let out = run([image("hello")]);
    out.assert_status(0)
        .assert_stdout_lines(&[HELLO_LINE, "args: (none)"])
        .assert_stderr_empty();
}

#[test]
fn arguments_are_echoed_in_order() {
    clean_run(
        &["foo", "bar=baz", "-v", "--flag", "x"],
        0,
        "foo bar=baz -v --flag x",
        &[],
    );
}

#[test]
fn arguments_keep_spaces_and_utf8() {
    clean_run(
        &["héllo wörld", "λ=1", "tab\there"],
        0,
        "héllo wörld λ=1 tab\there",
        &[],
    );
}

#[test]
fn a_long_argument_is_passed_whole() {
    // The console breaks lines after 4096 bytes, ending each piece in `[+]`.
    let long = "a".repeat(8192);
    let out = hello([long.as_str(), "end"]);
    out.assert_status(0).assert_stderr_empty();
    assert_eq!(
        out.stdout.replace("[+]\n", ""),
        format!("{HELLO_LINE}\nargs: {long} end\n"),
        "{out:?}"
    );
    assert_eq!(out.stdout.lines().nth(1).map(str::len), Some(4096 + 3));
}

#[test]
fn exit_code_becomes_the_exit_status() {
    for n in [0, 1, 3, 42, 63] {
        let arg = format!("exit={n}");
        clean_run(&[&arg], n, &arg, &[]);
    }
}

#[test]
fn exit_code_with_other_arguments() {
    clean_run(&["a", "exit=3", "b"], 3, "a exit=3 b", &[]);
}

#[test]
fn bad_exit_values_are_rejected_by_the_guest() {
    for value in ["64", "255", "256", "-1", "+3", "", "abc", "3x", " 3"] {
        let arg = format!("exit={value}");
        let msg = format!("hello: bad exit code '{value}' (want 0..=63)");
        clean_run(&[&arg], 1, &arg, &[&msg]);
    }
}

#[test]
fn a_bad_exit_value_stops_before_any_crash() {
    clean_run(
        &["exit=abc", "crash=null"],
        1,
        "exit=abc crash=null",
        &["hello: bad exit code 'abc' (want 0..=63)"],
    );
}

#[test]
fn unknown_crash_modes_are_rejected_by_the_guest() {
    for mode in ["foo", "", "NULL", "stack_overflow", "null "] {
        let arg = format!("crash={mode}");
        let msg = format!(
            "hello: unknown crash mode '{mode}' (want null|ud|stack-overflow|wild-gpa|panic)"
        );
        clean_run(&[&arg], 1, &arg, &[&msg]);
    }
}

#[test]
fn runs_are_deterministic() {
    let first = hello(["exit=7", "same"]);
    for _ in 0..3 {
        let again = hello(["exit=7", "same"]);
        assert_eq!(
            (again.status, &again.stdout, &again.stderr),
            (first.status, &first.stdout, &first.stderr),
            "two identical runs differ:\n{first:?}\n{again:?}"
        );
    }
}

#[test]
fn smallest_and_largest_mem_boot() {
    for mem in ["8", "3072"] {
        let out = run([
            "--mem".as_ref(),
            mem.as_ref(),
            image("hello").as_os_str(),
            "--".as_ref(),
            "exit=5".as_ref(),
        ]);
        out.assert_status(5)
            .assert_stdout_lines(&[HELLO_LINE, "args: exit=5"])
            .assert_stderr_empty();
    }
}

/// Parses `key=value` words after `timings: ` into integers; panics on anything else.
#[track_caller]
fn timing_fields(out: &Outcome, line: &str, keys: &[&str]) -> Vec<u64> {
    let rest = line
        .strip_prefix("timings: ")
        .unwrap_or_else(|| panic!("{line:?} does not start with 'timings: '\n{out:?}"));
    let words: Vec<&str> = rest.split(' ').collect();
    assert_eq!(
        words.len(),
        keys.len(),
        "timings line {line:?} should have exactly {keys:?}\n{out:?}"
    );
    words
        .iter()
        .zip(keys)
        .map(|(word, key)| {
            let value = word
                .strip_prefix(key)
                .and_then(|w| w.strip_prefix('='))
                .unwrap_or_else(|| panic!("{word:?} in {line:?} should be {key}=N\n{out:?}"));
            value.parse().unwrap_or_else(|_| {
                panic!("{key}={value:?} in {line:?} is not an integer\n{out:?}")
            })
        })
        .collect()
}

#[test]
fn timings_are_printed_on_request() {
    let out = run([
        "--timings".as_ref(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "exit=2".as_ref(),
    ]);
    out.assert_status(2)
        .assert_stdout_lines(&[HELLO_LINE, "args: exit=2"]);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "want exactly two timings lines\n{out:?}");
    let vm = timing_fields(
        &out,
        lines[0],
        &[
            "compartment",
            "vm_us",
            "memory_us",
            "slots_us",
            "vm_created_us",
            "machine_us",
            "entry_us",
            "guest_main_us",
        ],
    );
    let exit = timing_fields(&out, lines[1], &["exit_us"]);
    assert_eq!(vm[0], 0, "{out:?}");
    // Every phase after the one before it.
    for pair in vm[1..].windows(2) {
        assert!(pair[0] <= pair[1], "phases out of order\n{out:?}");
    }
    let (guest_main, exit) = (vm[7], exit[0]);
    assert!(
        guest_main <= exit,
        "exit ({exit} us) before guest main ({guest_main} us)\n{out:?}"
    );
}

#[test]
fn no_timings_without_the_flag() {
    let out = hello(["exit=0"]);
    out.assert_status(0).assert_stderr_empty();
}

#[test]
fn help_lists_the_options() {
    for flag in ["--help", "-h"] {
        let out = run([flag]);
        out.assert_status(0).assert_stderr_empty();
        for needle in [
            "Usage: flexos-vmm",
            "--compartments",
            "--mem",
            "--timings",
            "<IMAGE>",
        ] {
            assert!(
                out.stdout.contains(needle),
                "{flag} output should mention {needle:?}\n{out:?}"
            );
        }
    }
}

#[test]
fn version_is_the_crate_version() {
    for flag in ["--version", "-V"] {
        let out = run([flag]);
        out.assert_status(0)
            .assert_stdout_lines(&[&format!("flexos-vmm {}", env!("CARGO_PKG_VERSION"))])
            .assert_stderr_empty();
    }
}
