//! Crash and isolation-violation reports (docs/design.md, one VM per compartment) for every `hello crash=MODE`:
//! exit status 70, the guest's console on stdout, and on stderr one report whose headline
//! names the exception (#PF, #UD, isolation violation, panic) and the crashing function
//! with a file:line inside that function's source, the decoded CR2 for page faults,
//! registers consistent with the backtrace, a symbolized backtrace through `hello::main`
//! (folded for the stack-overflow recursion), and the console tail.

use std::ops::RangeInclusive;

use flexos_e2e::{hello, image, repo_root, run, Outcome, EXIT_CRASH, HELLO_LINE};

/// Where the monitor's symbolizer says hello's source is (relative to the repo root).
const HELLO_SRC: &str = "guest-kernel/apps/hello/src/main.rs";

/// The 1-based line range of the top-level `fn name` in hello's source.
fn fn_lines(name: &str) -> RangeInclusive<u32> {
    let path = repo_root().join(HELLO_SRC);
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = src.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("fn {name}(")))
        .unwrap_or_else(|| panic!("no `fn {name}(` in {}", path.display()));
    let end = start
        + lines[start..]
            .iter()
            .position(|l| *l == "}")
            .unwrap_or_else(|| panic!("`fn {name}` in {} never ends", path.display()));
    (start as u32 + 1)..=(end as u32 + 1)
}

/// The 1-based line of hello's source that contains `needle`.
fn line_of(needle: &str) -> u32 {
    let path = repo_root().join(HELLO_SRC);
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in {}", path.display())) as u32
        + 1
}

/// The sections of a crash report.
struct Report {
    headline: String,
    cr2: Option<String>,
    rip: String,
    backtrace: Vec<String>,
    console: Vec<String>,
}

/// Checks the parts common to every crash and splits the report into its sections.
#[track_caller]
fn crash(args: &[&str], mode: &str, out: &Outcome) -> Report {
    out.assert_status(EXIT_CRASH);
    let echo = format!("args: {}", args.join(" "));
    let crashing = format!("hello: crashing with {mode}");
    out.assert_stdout_lines(&[HELLO_LINE, &echo, &crashing]);

    let lines: Vec<&str> = out.stderr.lines().collect();
    let headline = lines
        .iter()
        .find(|l| l.starts_with("flexos-vmm: "))
        .unwrap_or_else(|| panic!("no report headline\n{out:?}"));
    assert!(
        headline.starts_with("flexos-vmm: compartment 0 (app) "),
        "headline should name compartment 0 (app)\n{out:?}"
    );
    let cr2 = lines
        .iter()
        .find(|l| l.starts_with("  fault address (CR2): "))
        .map(|l| l.to_string());
    let rip = out
        .stderr_line("rip ")
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no value after rip\n{out:?}"))
        .to_string();

    let section = |title: &str, next: Option<&str>| -> Vec<String> {
        let start = lines
            .iter()
            .position(|l| *l == title)
            .unwrap_or_else(|| panic!("no {title:?} section\n{out:?}"));
        let end = next.map_or(lines.len(), |n| {
            lines
                .iter()
                .position(|l| *l == n)
                .unwrap_or_else(|| panic!("no {n:?} section\n{out:?}"))
        });
        assert!(
            start < end,
            "{title:?} should come before {next:?}\n{out:?}"
        );
        lines[start + 1..end]
            .iter()
            .map(|l| l.to_string())
            .collect()
    };
    let backtrace = section("  backtrace:", Some("  last console lines:"));
    let console = section("  last console lines:", None);
    assert_eq!(
        console,
        [
            format!("    | {HELLO_LINE}"),
            format!("    | {echo}"),
            format!("    | {crashing}"),
        ],
        "the console tail should be the guest's three lines\n{out:?}"
    );
    assert!(!backtrace.is_empty(), "empty backtrace\n{out:?}");
    let frame0 = backtrace[0].trim_start();
    assert!(
        frame0.starts_with(&format!("#0   {rip} ")),
        "frame #0 should be at rip {rip}\n{out:?}"
    );
    Report {
        headline: headline.to_string(),
        cr2,
        rip,
        backtrace,
        console,
    }
}

/// Boots hello with `crash=MODE` (plus `extra` arguments) and checks the common parts.
#[track_caller]
fn crash_mode(mode: &str) -> (Outcome, Report) {
    let arg = format!("crash={mode}");
    let out = hello([&arg]);
    let report = crash(&[&arg], mode, &out);
    (out, report)
}

/// Asserts that `text` places code at `hello::func+0x..` in hello's source, on a line
/// inside `func`.
#[track_caller]
fn assert_in_fn(text: &str, func: &str, out: &Outcome) {
    let sym = format!("hello::{func}+0x");
    let at = text
        .find(&sym)
        .unwrap_or_else(|| panic!("{text:?} should name {sym}..\n{out:?}"));
    let file = format!("({HELLO_SRC}:");
    let rest = &text[at..];
    let pos = rest
        .find(&file)
        .unwrap_or_else(|| panic!("{text:?} should give {HELLO_SRC}:LINE\n{out:?}"));
    let line: u32 = rest[pos + file.len()..]
        .split(')')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no line number in {text:?}\n{out:?}"));
    let span = fn_lines(func);
    assert!(
        span.contains(&line),
        "{text:?}: line {line} is outside fn {func} (lines {span:?})\n{out:?}"
    );
}

/// Asserts that some backtrace frame is in `hello::main`.
#[track_caller]
fn assert_through_main(report: &Report, out: &Outcome) {
    let frame = report
        .backtrace
        .iter()
        .find(|f| f.contains(" hello::main+0x"))
        .unwrap_or_else(|| panic!("the backtrace should go through hello::main\n{out:?}"));
    assert_in_fn(frame, "main", out);
}

#[test]
fn null_pointer_read_is_a_page_fault() {
    let (out, report) = crash_mode("null");
    assert!(
        report.headline.starts_with(
            "flexos-vmm: compartment 0 (app) crashed: page fault (#PF) at hello::crash_null+0x"
        ),
        "{out:?}"
    );
    assert_in_fn(&report.headline, "crash_null", &out);
    let cr2 = report
        .cr2
        .as_deref()
        .unwrap_or_else(|| panic!("no CR2 line\n{out:?}"));
    assert_eq!(
        cr2,
        "  fault address (CR2): 0x0000000000000000: read of a page that is not mapped in user mode (null pointer dereference)",
        "{out:?}"
    );
    out.assert_stderr_contains("  error code: 0x4\n");
    assert_in_fn(&report.backtrace[0], "crash_null", &out);
    assert_through_main(&report, &out);
}

#[test]
fn ud2_is_an_invalid_opcode() {
    let (out, report) = crash_mode("ud");
    assert!(
        report.headline.starts_with(
            "flexos-vmm: compartment 0 (app) crashed: invalid opcode (#UD) at hello::crash_ud+0x"
        ),
        "{out:?}"
    );
    assert_in_fn(&report.headline, "crash_ud", &out);
    assert!(report.cr2.is_none(), "#UD has no CR2\n{out:?}");
    assert_in_fn(&report.backtrace[0], "crash_ud", &out);
    assert_through_main(&report, &out);
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let (out, report) = crash_mode("stack-overflow");
    assert!(
        report.headline.starts_with(
            "flexos-vmm: compartment 0 (app) crashed: page fault (#PF) at hello::crash_stack_overflow+0x"
        ),
        "{out:?}"
    );
    assert_in_fn(&report.headline, "crash_stack_overflow", &out);
    let cr2 = report
        .cr2
        .as_deref()
        .unwrap_or_else(|| panic!("no CR2 line\n{out:?}"));
    assert!(
        cr2.contains("(stack overflow: hit the guard page below the stack)"),
        "{out:?}"
    );
    let addr = cr2
        .strip_prefix("  fault address (CR2): 0x")
        .and_then(|s| s.split(':').next())
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or_else(|| panic!("unparsable CR2 line\n{out:?}"));
    assert!(
        (0x1000_0000..0x1000_0000 + (64 << 20)).contains(&addr),
        "the guard page should be inside the data window (heap and stack at 0x10000000), CR2 = {addr:#x}\n{out:?}"
    );
    assert_in_fn(&report.backtrace[0], "crash_stack_overflow", &out);
    assert!(
        report
            .backtrace
            .iter()
            .any(|f| f.contains("more frames in hello::crash_stack_overflow (recursion)")),
        "the recursion should be folded into one line\n{out:?}"
    );
    assert!(
        report.backtrace.len() < 10,
        "the folded backtrace should be short\n{out:?}"
    );
}

#[test]
fn wild_guest_physical_read_violates_isolation() {
    let (out, report) = crash_mode("wild-gpa");
    // hello reads at align_up(mem, 2 MiB) + 2 MiB; 64 MiB by default.
    assert!(
        report.headline.starts_with(
            "flexos-vmm: compartment 0 (app) violated isolation: read of 8 bytes at guest-physical 0x4200000, \
             which is neither its memory nor a device it owns, at hello::crash_wild_gpa+0x"
        ),
        "{out:?}"
    );
    assert_in_fn(&report.headline, "crash_wild_gpa", &out);
    assert!(
        report.cr2.is_none(),
        "a violation is not a page fault\n{out:?}"
    );
    assert_in_fn(&report.backtrace[0], "crash_wild_gpa", &out);
    assert_through_main(&report, &out);
}

#[test]
fn wild_read_address_follows_mem() {
    for (mem, gpa) in [("8", "0xa00000"), ("9", "0xc00000"), ("128", "0x8200000")] {
        let out = run([
            "--mem".as_ref(),
            mem.as_ref(),
            image("hello").as_os_str(),
            "--".as_ref(),
            "crash=wild-gpa".as_ref(),
        ]);
        let report = crash(&["crash=wild-gpa"], "wild-gpa", &out);
        let want = format!("violated isolation: read of 8 bytes at guest-physical {gpa}, ");
        assert!(
            report.headline.contains(&want),
            "--mem {mem}: headline should contain {want:?}\n{out:?}"
        );
    }
}

#[test]
fn panic_reports_message_and_location() {
    let (out, report) = crash_mode("panic");
    let line = line_of("panic!(\"hello: crash=panic requested\")");
    let prefix = "flexos-vmm: compartment 0 (app) panicked at ";
    let rest = report
        .headline
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("headline should start with {prefix:?}\n{out:?}"));
    let want = format!("apps/hello/src/main.rs:{line}:");
    assert!(
        rest.contains(&want) && rest.ends_with(": hello: crash=panic requested"),
        "headline should give {want}COLUMN and the message\n{out:?}"
    );
    assert!(report.cr2.is_none(), "a panic is not a page fault\n{out:?}");
    let frame = report
        .backtrace
        .iter()
        .find(|f| f.contains(" hello::crash_panic+0x"))
        .unwrap_or_else(|| panic!("the backtrace should go through crash_panic\n{out:?}"));
    assert_in_fn(frame, "crash_panic", &out);
    assert_through_main(&report, &out);
}

#[test]
fn crash_wins_over_exit_code() {
    let out = hello(["crash=null", "exit=5"]);
    let report = crash(&["crash=null", "exit=5"], "null", &out);
    assert!(
        report
            .headline
            .contains("page fault (#PF) at hello::crash_null+0x"),
        "{out:?}"
    );
    assert_eq!(report.console.len(), 3);
}

#[test]
fn timings_still_print_when_the_guest_crashes() {
    let out = run([
        "--timings".as_ref(),
        image("hello").as_os_str(),
        "--".as_ref(),
        "crash=ud".as_ref(),
    ]);
    let report = crash(&["crash=ud"], "ud", &out);
    assert!(report.headline.contains("invalid opcode (#UD)"), "{out:?}");
    assert!(
        out.stderr.starts_with("timings: compartment=0 vm_us="),
        "{out:?}"
    );
    out.assert_stderr_contains("\ntimings: exit_us=");
}

#[test]
fn crash_reports_are_identical_across_runs() {
    for mode in ["null", "ud", "stack-overflow", "wild-gpa", "panic"] {
        let (first, a) = crash_mode(mode);
        let (again, b) = crash_mode(mode);
        assert_eq!(a.rip, b.rip, "{first:?}\n{again:?}");
        assert_eq!(
            first.stderr, again.stderr,
            "{mode}: reports differ between runs"
        );
    }
}
