//! A guest (or its environment) working against the monitor: console output meant to
//! exhaust memory or drive the terminal, signals, and a stderr nobody reads.

use flexos_e2e::{hello, EXIT_CRASH, HELLO_LINE};

/// Guest bytes on one console line before it is broken (vmm/src/console.rs).
const LINE_MAX: usize = 4096;
/// How a broken line ends.
const CONTINUES: &str = "[+]";

#[test]
fn a_line_without_end_is_broken_and_the_report_stays_small() {
    // 64 MiB of 'A' without a newline, then `hello: crashing with ud` and #UD.
    let out = hello(["print=flood", "crash=ud"]);
    out.assert_status(EXIT_CRASH);
    let flood = 64 << 20;
    let lines: Vec<&str> = out.stdout.lines().collect();
    let full = format!("{}{CONTINUES}", "A".repeat(LINE_MAX));
    assert_eq!(lines.len(), 2 + flood / LINE_MAX + 1, "{}", out.stderr);
    assert_eq!(lines[..2], [HELLO_LINE, "args: print=flood crash=ud"]);
    // Every byte arrives, in lines of LINE_MAX; the one after the last 'A' breaks too.
    assert!(lines[2..2 + flood / LINE_MAX].iter().all(|l| *l == full));
    assert_eq!(lines.last(), Some(&"hello: crashing with ud"));
    // The report repeats the console's last lines, each cut short.
    assert!(
        out.stderr.len() < 8 << 10,
        "report of {} bytes:\n{}",
        out.stderr.len(),
        &out.stderr[..out.stderr.len().min(4000)]
    );
    assert!(out
        .stderr
        .starts_with("flexos-vmm: compartment 0 (app) crashed: invalid opcode (#UD)"));
    let cut = format!("    | {}…\n", "A".repeat(200));
    assert_eq!(out.stderr.matches(&cut).count(), 9, "{}", out.stderr);
    assert!(out.stderr.ends_with("    | hello: crashing with ud\n"));
}

#[test]
fn control_characters_are_escaped_in_console_panic_and_report() {
    let out = hello(["print=escapes"]);
    out.assert_status(EXIT_CRASH);
    let console = [
        r"esc:\x1b[31mred\x1b[0m cr:\x0d nul:\x00 del:\x7f csi:\u{9b}2J bidi:\u{202e}olleh",
        r"invalid:\xff\xfe\xc3( end",
        r"\x1b[1A\x1b[2K\x0dflexos-vmm: error: forged by the guest",
    ];
    let mut want = vec![HELLO_LINE, "args: print=escapes"];
    want.extend(console);
    out.assert_stdout_lines(&want);
    let headline = out.stderr.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with("flexos-vmm: compartment 0 (app) panicked at "),
        "{out:?}"
    );
    assert!(
        headline.ends_with(r": \x1b[2K\x0dflexos-vmm: error: forged panic\x0asecond line"),
        "{out:?}"
    );
    for line in console {
        out.assert_stderr_contains(&format!("    | {line}\n"));
    }
    // Nothing but newlines among the control characters, anywhere.
    let raw = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');
    assert!(!raw(&out.stdout) && !raw(&out.stderr), "{out:?}");
    assert!(!out
        .stderr
        .lines()
        .any(|l| l.starts_with("flexos-vmm: error")));
}

#[test]
fn a_character_split_across_console_writes_stays_whole() {
    hello(["print=split-utf8"])
        .assert_status(0)
        .assert_stdout_lines(&[
            HELLO_LINE,
            "args: print=split-utf8",
            "split: caf\u{e9} \u{1f600} end",
            r"cut: \xe2\x82x",
        ])
        .assert_stderr_empty();
}
