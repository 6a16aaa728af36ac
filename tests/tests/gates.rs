//! Gates across compartments, end to end (docs/design.md, gates; docs/usage.md, components and placement): `gatebench` under
//! every default split and an explicit `--config` placement, placement mistakes, and
//! `gatecheck`'s isolation and fault scenarios (a leaked private pointer, a malicious
//! ring writer, a callee that dies while its caller waits).
//!
//! Nothing here asserts a timing: gatebench runs with a small `calls=N` and its
//! figures are only checked for shape (every case present once, in order, with the
//! right compartment count and consistent fields). The scenarios are deterministic:
//! their console output and reports are compared line by line where they can be.

use std::ffi::OsString;
use std::path::Path;

use flexos_e2e::{image, run, Outcome, TempDir, EXIT_CRASH, EXIT_USAGE};

/// gatebench's cases, in the order it prints them.
const CASES: [&str; 8] = [
    "function-call",
    "gate-local",
    "gate-remote-0",
    "gate-remote-6",
    "gate-remote-buf64",
    "gate-remote-buf4k",
    "gate-nested",
    "gate-chain",
];

/// Calls per case: enough to cross every path many times, few enough for seconds.
const CALLS: &str = "calls=2000";
/// A time bound no test run reaches, however loaded the host: the call bound ends
/// every case (what `assert_gatebench` checks).
const NO_TIME_BOUND: &str = "seconds=3600";

/// What the placement errors list after the problem.
const OFFER: &str = "the image offers components bench, callee, relay1, relay2 and default \
                     splits for --compartments 1, 2, 3, 4";

/// Runs the monitor with `opts`, then `img`, then `-- guest_args` if any.
fn boot(opts: &[&str], img: &Path, guest_args: &[&str]) -> Outcome {
    let mut args: Vec<OsString> = opts.iter().map(OsString::from).collect();
    args.push(img.into());
    if !guest_args.is_empty() {
        args.push("--".into());
        args.extend(guest_args.iter().map(OsString::from));
    }
    run(args)
}

/// One gatebench result line.
#[derive(Debug)]
struct Row {
    bench: String,
    case: String,
    compartments: u64,
    calls: u64,
    bound: String,
    cycles_min: u64,
    cycles_median: u64,
    ns_median: String,
}

/// Parses a flat JSON object of string and number values, exactly as gatebench prints
/// it: `{"key":value,...}` with no spaces, no nesting and no escapes, and checks that
/// it has exactly the keys `want` (sorted).
fn parse_object(
    line: &str,
    want: &[&str],
    out: &Outcome,
) -> std::collections::BTreeMap<String, String> {
    let body = line
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON object: {line:?}\n{out:?}"));
    let mut fields = std::collections::BTreeMap::new();
    for pair in body.split(',') {
        let (k, v) = pair
            .split_once(':')
            .unwrap_or_else(|| panic!("bad field {pair:?} in {line:?}\n{out:?}"));
        let k = k
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or_else(|| panic!("unquoted key {k:?} in {line:?}\n{out:?}"));
        assert!(
            fields.insert(k.to_string(), v.to_string()).is_none(),
            "duplicate key {k:?} in {line:?}\n{out:?}"
        );
    }
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(keys, want, "wrong keys in {line:?}\n{out:?}");
    fields
}

fn number(fields: &std::collections::BTreeMap<String, String>, k: &str, line: &str) -> u64 {
    fields[k]
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("{k} should be an integer in {line:?}"))
}

/// Parses one case's result line.
fn parse_row(line: &str, out: &Outcome) -> Row {
    let fields = parse_object(
        line,
        &[
            "bench",
            "bound",
            "calls",
            "case",
            "compartments",
            "cycles_median",
            "cycles_min",
            "ns_median",
        ],
        out,
    );
    let text = |k: &str| {
        let v = &fields[k];
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{k} should be a string in {line:?}\n{out:?}"))
            .to_string()
    };
    Row {
        bench: text("bench"),
        case: text("case"),
        compartments: number(&fields, "compartments", line),
        calls: number(&fields, "calls", line),
        bound: text("bound"),
        cycles_min: number(&fields, "cycles_min", line),
        cycles_median: number(&fields, "cycles_median", line),
        ns_median: fields["ns_median"].clone(),
    }
}

/// The bench compartment's endpoint counters, from gatebench's last line.
#[derive(Debug)]
struct EndpointStats {
    calls: u64,
    sleeps: u64,
    doorbells: u64,
}

/// Asserts a clean gatebench run of 2000 calls per case in `compartments` compartments
/// whose entry compartment is named `entry` (its console prefix when there are
/// several): status 0, nothing on stderr, exactly one well-formed line per case, in
/// order, then the endpoint counters, which it returns.
#[track_caller]
fn assert_gatebench(out: &Outcome, compartments: u64, entry: &str) -> EndpointStats {
    out.assert_status(0).assert_stderr_empty();
    let prefix = if compartments > 1 {
        format!("[{entry}] ")
    } else {
        String::new()
    };
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        CASES.len() + 1,
        "one line per case, the counters and nothing else\n{out:?}"
    );
    for (line, case) in lines.iter().zip(CASES) {
        let json = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line:?} should start with {prefix:?}\n{out:?}"));
        let row = parse_row(json, out);
        assert_eq!(row.bench, "gate", "{line}\n{out:?}");
        assert_eq!(row.case, case, "cases out of order\n{out:?}");
        assert_eq!(row.compartments, compartments, "{line}\n{out:?}");
        assert_eq!(
            (row.calls, row.bound.as_str()),
            (2000, "calls"),
            "{line}\n{out:?}"
        );
        assert!(
            row.cycles_min <= row.cycles_median,
            "min > median: {line}\n{out:?}"
        );
        let (int, frac) = row
            .ns_median
            .split_once('.')
            .unwrap_or_else(|| panic!("ns_median should have one decimal: {line}\n{out:?}"));
        assert!(
            int.parse::<u64>().is_ok() && frac.len() == 1 && frac.parse::<u8>().is_ok(),
            "ns_median should be a decimal number: {line}\n{out:?}"
        );
        // A median above zero cycles cannot take zero nanoseconds (the TSC runs at
        // MHz..GHz rates, so one cycle is under 1 ns but a few hundred are not).
        if row.cycles_median >= 10_000 {
            assert_ne!(row.ns_median, "0.0", "{line}\n{out:?}");
        }
    }
    let last = lines[CASES.len()]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("the counters line should start with {prefix:?}\n{out:?}"));
    let fields = parse_object(
        last,
        &[
            "bench",
            "calls",
            "compartments",
            "doorbells",
            "errors",
            "served",
            "sleeps",
        ],
        out,
    );
    assert_eq!(fields["bench"], "\"gate-endpoint\"", "{out:?}");
    assert_eq!(number(&fields, "compartments", last), compartments);
    assert_eq!(number(&fields, "errors", last), 0, "{out:?}");
    EndpointStats {
        calls: number(&fields, "calls", last),
        sleeps: number(&fields, "sleeps", last),
        doorbells: number(&fields, "doorbells", last),
    }
}

#[track_caller]
fn gatebench_in(compartments: u64) -> EndpointStats {
    let n = compartments.to_string();
    let out = boot(
        &["--compartments", &n],
        &image("gatebench"),
        &[CALLS, NO_TIME_BOUND],
    );
    assert_gatebench(&out, compartments, "bench")
}

#[test]
fn gatebench_in_one_compartment() {
    let stats = gatebench_in(1);
    assert_eq!(
        (stats.calls, stats.sleeps, stats.doorbells),
        (0, 0, 0),
        "every call is a direct call: {stats:?}"
    );
}

#[test]
fn gatebench_in_two_compartments() {
    gatebench_in(2);
}

#[test]
fn gatebench_in_three_compartments() {
    gatebench_in(3);
}

#[test]
fn gatebench_in_four_compartments_on_the_sleep_and_doorbell_path() {
    // Four vCPUs on this two-core host: waiting compartments must sleep and be woken
    // by doorbells for the chain to make progress. relay1 idles through every case
    // before the chain (bench calls only callee), so it is asleep when bench first
    // calls it: bench must have rung at least that doorbell.
    let stats = gatebench_in(4);
    assert!(stats.doorbells > 0, "no doorbell rang: {stats:?}");
    assert!(stats.calls > 0, "{stats:?}");
}

#[test]
fn gatebench_with_a_config_placement() {
    let dir = TempDir::new("placement");
    let config = dir.write(
        "gates.toml",
        b"[[compartment]]\nname = \"main\"\ncomponents = [\"bench\", \"relay1\"]\n\n\
          [[compartment]]\nname = \"far\"\ncomponents = [\"relay2\", \"callee\"]\n",
    );
    let config = config.to_str().expect("temp paths are UTF-8");
    let out = boot(
        &["--config", config],
        &image("gatebench"),
        &[CALLS, NO_TIME_BOUND],
    );
    assert_gatebench(&out, 2, "main");
}

#[test]
fn gatebench_runs_one_case_when_asked() {
    let out = boot(
        &["--compartments", "2"],
        &image("gatebench"),
        &[CALLS, "case=gate-chain"],
    );
    out.assert_status(0).assert_stderr_empty();
    let cases: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[bench] "))
        .filter(|l| l.starts_with("{\"bench\":\"gate\","))
        .map(|l| parse_row(l, &out).case)
        .collect();
    assert_eq!(cases, ["gate-chain"], "{out:?}");
}

/// The hand-off baselines run only when named, and measure something (an exit or a
/// doorbell is never free: at least a microsecond on any host).
#[test]
fn gatebench_runs_the_hand_off_baselines_only_when_named() {
    for case in ["hypercall-sleep0", "hypercall-doorbell"] {
        let out = boot(&[], &image("gatebench"), &[CALLS, &format!("case={case}")]);
        out.assert_status(0).assert_stderr_empty();
        let rows: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("{\"bench\":\"gate\","))
            .map(String::from)
            .collect();
        assert_eq!(rows.len(), 1, "{out:?}");
        let row = parse_row(&rows[0], &out);
        assert_eq!(row.case, case);
        let ns: f64 = row.ns_median.parse().unwrap();
        assert!(ns >= 1000.0, "{out:?}");
    }
    // A full run leaves them out.
    let out = boot(&[], &image("gatebench"), &[CALLS]);
    out.assert_status(0);
    assert!(!out.stdout.contains("hypercall-"), "{out:?}");
}

#[test]
fn gatebench_rejects_bad_arguments() {
    let out = boot(&[], &image("gatebench"), &["calls=0"]);
    out.assert_status(2)
        .assert_stdout_lines(&["gatebench: bad calls=0 (want a positive integer)"])
        .assert_stderr_empty();
    let out = boot(&[], &image("gatebench"), &["rounds=5"]);
    out.assert_status(2)
        .assert_stdout_lines(&[
            "gatebench: unknown argument 'rounds=5' (usage: gatebench [calls=N] [seconds=S] [case=NAME])",
        ])
        .assert_stderr_empty();
    for (arg, why) in [
        ("seconds=0", "gatebench: bad seconds=0 (want 1..=3600)"),
        ("seconds=x", "gatebench: bad seconds=x (want 1..=3600)"),
        (
            "case=gate",
            "gatebench: unknown case=gate (cases: function-call, gate-local, gate-remote-0, \
             gate-remote-6, gate-remote-buf64, gate-remote-buf4k, gate-nested, gate-chain, \
             hypercall-sleep0, hypercall-doorbell)",
        ),
        (
            "calls=4000001",
            "gatebench: bad calls=4000001 (want 1..=4000000: every sample is kept for the median)",
        ),
    ] {
        boot(&[], &image("gatebench"), &[arg])
            .assert_status(2)
            .assert_stdout_lines(&[why])
            .assert_stderr_empty();
    }
}

#[test]
fn each_case_ends_at_its_call_or_time_bound() {
    // 4 KiB buffer calls across two VMs take over a microsecond each, so 4 million of
    // them cannot fit in one second: that case must end by time, with fewer calls.
    let out = boot(
        &["--compartments", "2"],
        &image("gatebench"),
        &["calls=4000000", "seconds=1"],
    );
    out.assert_status(0).assert_stderr_empty();
    let rows: Vec<Row> = out
        .stdout
        .lines()
        .take(CASES.len())
        .map(|l| parse_row(l.strip_prefix("[bench] ").unwrap_or(l), &out))
        .collect();
    for row in &rows {
        match row.bound.as_str() {
            "calls" => assert_eq!(row.calls, 4_000_000, "{row:?}"),
            "time" => assert!(row.calls > 0 && row.calls < 4_000_000, "{row:?}"),
            other => panic!("bound {other:?}\n{out:?}"),
        }
    }
    let buf4k = rows
        .iter()
        .find(|r| r.case == "gate-remote-buf4k")
        .expect("buf4k");
    assert_eq!(buf4k.bound, "time", "{out:?}");
}

#[test]
fn gate_arguments_tune_the_kernel_and_are_hidden_from_the_app() {
    // A kernel argument is not one gatebench knows, yet it runs: main never sees it.
    let out = boot(
        &["--compartments", "2"],
        &image("gatebench"),
        &[CALLS, NO_TIME_BOUND, "gate.spin=3000"],
    );
    assert_gatebench(&out, 2, "bench");
    // hello echoes its arguments: the kernel's are left out.
    boot(&[], &image("hello"), &["a", "gate.spin=5", "b"])
        .assert_status(0)
        .assert_stdout_lines(&["Hello from FlexOS compartment 0 of 1!", "args: a b"]);
    let out = boot(&[], &image("hello"), &["gate.spin=lots"]);
    out.assert_status(63).assert_stdout_lines(&[
        "flexos: bad guest argument gate.spin=lots: want a number of spin rounds",
    ]);
}

#[test]
fn gatebench_lists_its_components_and_splits() {
    let img = image("gatebench");
    let out = boot(&["--list-components"], &img, &[]);
    let first = format!("components of {}:", img.display());
    out.assert_status(0)
        .assert_stderr_empty()
        .assert_stdout_lines(&[
            &first,
            "  bench",
            "  callee",
            "  relay1",
            "  relay2",
            "default splits:",
            "  --compartments 1: all=[bench, callee, relay1, relay2]",
            "  --compartments 2: bench=[bench, relay1, relay2] callee=[callee]",
            "  --compartments 3: bench=[bench, relay1] relay2=[relay2] callee=[callee]",
            "  --compartments 4: bench=[bench] relay1=[relay1] relay2=[relay2] callee=[callee]",
        ]);
}

/// Asserts a placement error: status 64, nothing on stdout, one `flexos-vmm: error:`
/// line naming `problem` and listing what the image offers.
#[track_caller]
fn assert_placement_error(out: &Outcome, problem: &str) {
    out.assert_status(EXIT_USAGE);
    assert!(out.stdout.is_empty(), "no guest may run\n{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one error line\n{out:?}");
    let line = out.stderr.trim_end();
    assert!(line.starts_with("flexos-vmm: error: "), "{out:?}");
    assert!(line.contains(problem), "should name {problem:?}\n{out:?}");
    assert!(
        line.contains(OFFER),
        "should list what the image offers\n{out:?}"
    );
}

/// Runs gatebench with a `--config` file holding `toml`.
fn with_config(toml: &str) -> Outcome {
    let dir = TempDir::new("placement");
    let config = dir.write("bad.toml", toml.as_bytes());
    let config = config.to_str().expect("temp paths are UTF-8");
    boot(&["--config", config], &image("gatebench"), &[CALLS])
}

#[test]
fn placement_with_an_unknown_component() {
    let out = with_config(
        "[[compartment]]\nname = \"all\"\n\
         components = [\"bench\", \"callee\", \"relay1\", \"relay2\", \"relay3\"]\n",
    );
    assert_placement_error(&out, "unknown component 'relay3' in compartment 'all'");
}

#[test]
fn placement_with_a_component_placed_twice() {
    let out = with_config(
        "[[compartment]]\nname = \"a\"\ncomponents = [\"bench\", \"callee\"]\n\
         [[compartment]]\nname = \"b\"\ncomponents = [\"callee\", \"relay1\", \"relay2\"]\n",
    );
    assert_placement_error(&out, "component 'callee' is placed twice");
}

#[test]
fn placement_with_a_component_not_placed() {
    let out = with_config(
        "[[compartment]]\nname = \"a\"\ncomponents = [\"bench\", \"callee\", \"relay2\"]\n",
    );
    assert_placement_error(&out, "component 'relay1' is not placed");
}

#[test]
fn placement_with_an_empty_compartment() {
    let out = with_config(
        "[[compartment]]\nname = \"a\"\n\
         components = [\"bench\", \"callee\", \"relay1\", \"relay2\"]\n\
         [[compartment]]\nname = \"idle\"\ncomponents = []\n",
    );
    assert_placement_error(&out, "compartment 'idle' is empty");
}

#[test]
fn placement_without_a_default_split() {
    let out = boot(
        &["--compartments", "5"],
        &image("gatebench"),
        &[CALLS, NO_TIME_BOUND],
    );
    assert_placement_error(&out, "--compartments 5: the image has no 5-way split");
}

/// Runs gatecheck's `scenario` in `compartments` compartments.
fn gatecheck(compartments: &str, scenario: &str) -> Outcome {
    boot(
        &["--compartments", compartments],
        &image("gatecheck"),
        &[scenario],
    )
}

#[test]
fn leaked_private_pointer_is_an_isolation_violation_in_the_callee() {
    let out = gatecheck("2", "leak");
    out.assert_status(EXIT_CRASH);
    // The guest prints the address it leaks; the report must name that very address.
    // Whether app also sees victim's dead flag (and says so) before the monitor ends
    // the run is a race, so a second line may only be that.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.len() == 1
            || lines[1..] == ["[app] gatecheck: leak: the call failed: peer compartment is dead"],
        "{out:?}"
    );
    let addr = lines[0]
        .strip_prefix("[app] gatecheck: leak: app passes the address ")
        .and_then(|rest| rest.strip_suffix(" of a private heap object to victim (compartment 1)"))
        .unwrap_or_else(|| panic!("unexpected stdout\n{out:?}"));
    let headline = out.stderr.lines().next().unwrap_or_default();
    let want = format!(
        "flexos-vmm: compartment 1 (victim) violated isolation: read of 8 bytes at \
         guest-physical {addr}, which is private memory of compartment 0 (app), at \
         gatecheck::victim::read_leaked_pointer+"
    );
    assert!(
        headline.starts_with(&want),
        "headline should start with {want:?}\n{out:?}"
    );
    out.assert_stderr_contains("  components: victim\n");
    // The violating read happened inside the gate server, called from the serve loop.
    let backtrace = &out.stderr[out.stderr.find("  backtrace:").expect("a backtrace")..];
    for frame in [
        "gatecheck::victim::read_leaked_pointer",
        "rpc_shm::endpoint::Dispatch>::dispatch",
        "flexos_kernel::gate::serve_forever",
    ] {
        assert!(
            backtrace.contains(frame),
            "backtrace should show {frame}\n{out:?}"
        );
    }
}

#[test]
fn the_same_pointer_is_fine_in_its_own_compartment() {
    let out = gatecheck("1", "leak");
    out.assert_status(0).assert_stderr_empty();
    assert!(
        out.stdout
            .ends_with("gatecheck: leak: victim read 0x5ec2e7ed: it shares app's compartment\n"),
        "{out:?}"
    );
}

#[test]
fn malicious_ring_writes_get_error_replies_and_the_callee_keeps_serving() {
    let out = gatecheck("3", "malicious");
    out.assert_status(0).assert_stderr_empty().assert_stdout_lines(&[
        "[evil] evil: interface id 42 (nobody serves it): got error reply 'unknown interface' (code 1)",
        "[evil] evil: interface id 0xffff (beyond every server table): got error reply 'unknown interface' (code 1)",
        "[evil] evil: victim method id 999: got error reply 'unknown method' (code 2)",
        "[evil] evil: victim.measure(SharedBuf at offset 0: the region header): got error reply 'shared buffer outside the shared heap' (code 4)",
        "[evil] evil: victim.measure(SharedBuf 0xffffffc0+0x100, wraps around): got error reply 'shared buffer outside the shared heap' (code 4)",
        "[evil] evil: victim.flag(2) (a bool word that is neither 0 nor 1): got error reply 'invalid argument value' (code 3)",
        "[evil] evil: control word in state 0xdead: got error reply 'malformed request slot' (code 5)",
        "[evil] evil: victim.add with reserved bits set in the id word: got error reply 'malformed request slot' (code 5)",
        "[evil] evil: a well-formed victim.add(40, 2): got reply ok 42",
        "[evil] evil: victim.measure(SharedBuf in the heap of the channel between app and victim): got error reply 'shared buffer outside the shared heap' (code 4)",
        "[app] gatecheck: malicious: 10 of 10 hand-made requests answered as expected (9 error replies, 1 ok); victim served 10 of 10 well-behaved calls from app",
    ]);
}

#[test]
fn malicious_needs_three_compartments() {
    let out = gatecheck("2", "malicious");
    out.assert_status(2).assert_stderr_empty().assert_stdout_lines(&[
        "[app] gatecheck: malicious needs app, evil and victim in three compartments (try --compartments 3)",
    ]);
}

#[test]
fn a_callee_that_dies_ends_the_run_with_its_report() {
    let out = gatecheck("2", "peer-death");
    out.assert_status(EXIT_CRASH);
    // The caller's own line comes first; whether it also sees the dead flag before
    // the monitor ends the run is a race, so nothing after it is checked.
    assert!(
        out.stdout
            .starts_with("[app] gatecheck: peer-death: calling victim.crash() in compartment 1\n"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("returned"), "{out:?}");
    let headline = out.stderr.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with(
            "flexos-vmm: compartment 1 (victim) crashed: page fault (#PF) at \
             gatecheck::victim::crash_in_callee+"
        ),
        "{out:?}"
    );
    out.assert_stderr_contains("  components: victim\n")
        .assert_stderr_contains("(null pointer dereference)");
    let backtrace = &out.stderr[out.stderr.find("  backtrace:").expect("a backtrace")..];
    assert!(
        backtrace.contains("gatecheck::victim::crash_in_callee"),
        "{out:?}"
    );
}

#[test]
fn gatecheck_rejects_unknown_scenarios() {
    let out = gatecheck("1", "meltdown");
    out.assert_status(2)
        .assert_stderr_empty()
        .assert_stdout_lines(&[
            "gatecheck: unknown scenario 'meltdown' (want leak|malicious|peer-death|forge-reply|read-buffer|set-dead|write-header|write-state|print-channel)",
        ]);
}

/// Runs an intrusion scenario (app = 0, evil = 1, victim = 2) and checks that the
/// monitor stopped evil at its first touch of `what`, before anything got through.
fn intrusion(scenario: &str, access: &str, what: &str, at: &str) {
    let out = gatecheck("3", scenario);
    out.assert_status(EXIT_CRASH);
    assert!(
        !out.stdout.contains("got through"),
        "evil's intrusion must not succeed\n{out:?}"
    );
    let headline = out.stderr.lines().next().unwrap_or_default();
    let want_start = format!("flexos-vmm: compartment 1 (evil) violated isolation: {access}");
    let want_what = format!(", which is {what}, at {at}+");
    assert!(
        headline.starts_with(&want_start) && headline.contains(&want_what),
        "headline should start with {want_start:?} and contain {want_what:?}\n{out:?}"
    );
    out.assert_stderr_contains("  components: evil\n");
}

#[test]
fn a_third_compartment_cannot_forge_replies_on_another_pairs_ring() {
    intrusion(
        "forge-reply",
        "write of 8 bytes at guest-physical 0x",
        "the channel between compartment 0 (app) and compartment 2 (victim)",
        "gatecheck::evil::poke_u64",
    );
}

#[test]
fn a_third_compartment_cannot_read_a_buffer_in_flight_between_two_others() {
    intrusion(
        "read-buffer",
        "read of 8 bytes at guest-physical 0x",
        "the channel between compartment 0 (app) and compartment 2 (victim)",
        "rpc_shm::region::SharedBytes::read",
    );
}

#[test]
fn a_compartment_cannot_set_a_peers_dead_flag() {
    // Victim's dead flag: header page, DEAD_OFFSET 128 + 4 * 2.
    intrusion(
        "set-dead",
        "write at guest-physical 0x100000088,",
        "the shared region's header page (written by the monitor only)",
        "gatecheck::evil::poke_u32",
    );
}

#[test]
fn a_compartment_cannot_write_the_region_header() {
    intrusion(
        "write-header",
        "write at guest-physical 0x100000000,",
        "the shared region's header page (written by the monitor only)",
        "gatecheck::evil::poke_u64",
    );
}

/// Before: "invalid hypercall: console write buffer ... unreadable", which hid that the
/// buffer was someone else's memory.
#[test]
fn a_third_compartment_cannot_have_the_monitor_print_another_pairs_channel() {
    intrusion(
        "print-channel",
        "console write buffer 0x",
        "the channel between compartment 0 (app) and compartment 2 (victim)",
        "flexos_kernel::hypercall::console_write_at",
    );
}

#[test]
fn a_compartment_cannot_write_another_compartments_state_page() {
    // Victim's state page: the fourth page of the region.
    intrusion(
        "write-state",
        "write at guest-physical 0x100003000,",
        "the state page of compartment 2 (victim) (written by its owner only)",
        "gatecheck::evil::poke_u32",
    );
}
