//! `flexos-vmm`: boots one library-OS image into one KVM VM per compartment.
//!
//! main() only parses the command line and turns the result into an exit status; the
//! pieces live in the library's modules, named after what they hold.

// See lib.rs: narrowing casts are checked conversions or say why they truncate.
#![warn(clippy::cast_possible_truncation)]

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use flexos_vmm::cli::Cli;
use flexos_vmm::error::EXIT_USAGE;
use flexos_vmm::stderr_line;

/// One line from a clap error: its first line, plus the next one when the first only
/// introduces it (e.g. "the following required arguments were not provided:").
fn clap_one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match (first.ends_with(':'), lines.next()) {
        (true, Some(next)) => format!("{first} {next}"),
        _ => first.to_string(),
    }
}

/// RUST_LOG's filter (errors only by default). Crates that log what a guest did wrong
/// in their own words (virtio-queue, at error level, one line per bad ring access) are
/// silent unless RUST_LOG names them: the monitor reports those faults itself, once
/// per device and rate-limited, as `flexos-vmm: virtio-blk: ...`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::from_default_env();
    if !asked.contains("virtio_queue") {
        if let Ok(off) = "virtio_queue=off".parse() {
            filter = filter.add_directive(off);
        }
    }
    filter
}

fn main() -> ExitCode {
    let start = Instant::now();
    // Before anything opens a file (see stdio.rs).
    flexos_vmm::stdio::reserve_standard_fds();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            stderr_line!(
                "flexos-vmm: error: {} (see flexos-vmm --help)",
                clap_one_line(&e)
            );
            return exit_status(EXIT_USAGE);
        }
    };
    // Before the first thread: the sandbox's SIGSYS handler; then SIGINT/SIGTERM
    // blocked in every thread.
    let result = flexos_vmm::sandbox::configure(!cli.no_seccomp)
        .and_then(|()| flexos_vmm::signals::install())
        .and_then(|()| flexos_vmm::run(cli, start));
    match result {
        Ok(code) => exit_status(code),
        Err(e) => {
            stderr_line!("flexos-vmm: error: {e}");
            exit_status(e.exit_code())
        }
    }
}

/// The process status for `code`: guest codes are checked to 0..=63 and the monitor's
/// own are constants below 256, so a code outside a byte is a monitor bug.
fn exit_status(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).expect("exit statuses fit in a byte"))
}
