//! `flexos-vmm`: boots one library-OS image into one KVM VM per compartment.
//!
//! main() only parses the command line and turns the result into an exit status; the
//! pieces live in modules named after what they hold.

mod arch;
mod cli;
mod compartment;
mod console;
mod error;
mod hypercall;
mod image;
mod memory;
mod report;
mod symbols;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use kvm_ioctls::Kvm;

use crate::arch::layout::GuestLayout;
use crate::cli::Cli;
use crate::compartment::{Compartment, CompartmentSpec, Outcome};
use crate::error::{Result, VmmError, EXIT_CRASH, EXIT_USAGE};
use crate::image::Image;
use crate::memory::SharedRegion;
use crate::symbols::Symbolizer;

/// The KVM device; `FLEXOS_KVM_DEVICE` overrides it (tests use it to check the error
/// path without taking /dev/kvm away from the machine).
fn open_kvm() -> Result<Kvm> {
    let path = std::env::var("FLEXOS_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".into());
    let c_path = std::ffi::CString::new(path.clone())
        .map_err(|_| VmmError::Usage("FLEXOS_KVM_DEVICE contains a NUL byte".into()))?;
    Kvm::new_with_path(&c_path).map_err(|e| VmmError::KvmUnavailable {
        what: format!("cannot open {path}"),
        source: std::io::Error::from_raw_os_error(e.errno()),
    })
}

fn micros_since(start: Instant, t: Instant) -> u128 {
    t.duration_since(start).as_micros()
}

fn run(cli: Cli, start: Instant) -> Result<i32> {
    if cli.compartments == 0 {
        return Err(VmmError::Usage(
            "--compartments 0: a run needs at least one compartment".into(),
        ));
    }
    if cli.compartments > 1 || cli.config.is_some() {
        return Err(VmmError::Usage(
            "more than one compartment is not supported by this build yet; run with --compartments 1".into(),
        ));
    }
    let mem_size = memory::private_size_from_mib(cli.mem)?;
    let shared_size = memory::shared_size_from_mib(cli.shared_mem)?;
    let image = Image::open(&cli.image, GuestLayout::image_limit(mem_size))?;
    let kvm = open_kvm()?;
    let shared = SharedRegion::new(shared_size)?;

    let spec = CompartmentSpec {
        id: 0,
        count: 1,
        name: "comp0".into(),
        components: Vec::new(),
        mem_size,
        guest_args: cli.guest_args.clone(),
        timings: cli.timings,
    };
    let mut comp = Compartment::create(&kvm, spec, &image, &shared)?;
    let outcome = comp.run();
    let end = Instant::now();

    if cli.timings {
        let m = comp.milestones;
        let fmt =
            |t: Option<Instant>| t.map_or("-".to_string(), |t| micros_since(start, t).to_string());
        eprintln!(
            "timings: compartment={} vm_created_us={} guest_main_us={}",
            comp.spec.id,
            fmt(m.vm_created),
            fmt(m.guest_main)
        );
        eprintln!("timings: exit_us={}", micros_since(start, end));
    }
    match outcome {
        Outcome::Exited(code) => Ok(code as i32),
        Outcome::Crashed(report) => {
            let sym = Symbolizer::new(&image.path, &image.bytes);
            eprint!("{}", report.render(&sym));
            Ok(EXIT_CRASH)
        }
        Outcome::Failed(e) => Err(e),
    }
}

fn main() -> ExitCode {
    let start = Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("flexos-vmm: error: {first} (see flexos-vmm --help)");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    match run(cli, start) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("flexos-vmm: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
