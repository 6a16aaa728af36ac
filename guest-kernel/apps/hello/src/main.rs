//! `hello`: the first FlexOS image.
//!
//! Prints which compartment it runs in and its arguments, then exits with `exit=N`
//! (default 0) or crashes on purpose with `crash=MODE`, so the monitor's exit-code
//! plumbing, crash reports and isolation checks can be tested end to end:
//!
//! ```text
//! Hello from FlexOS compartment 0 of 1!
//! args: exit=3 foo
//! ```
//!
//! Every crash mode is its own `#[inline(never)]` function, so the monitor's symbolized
//! backtrace shows `main -> crash_<mode>`.
//!
//! Hostile console output, for the monitor's console checks, comes before any crash:
//! - `print=flood`: 64 MiB of `A` without a newline;
//! - `print=escapes`: escape sequences, CR, NUL, DEL, C1, bidi and invalid UTF-8 in
//!   console lines, then a panic whose message holds them too;
//! - `print=split-utf8`: multi-byte characters split across console writes;
//! - `spin=forever`: prints `hello: spinning` and never ends (for signal tests).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::arch::asm;
use core::hint::black_box;
use core::mem::MaybeUninit;

use flexos_kernel::abi::{CONSOLE_MAX, EXIT_CODE_MAX, LARGE_PAGE_SIZE};
use flexos_kernel::{Args, boot_info, console, println};

flexos_kernel::main!(main);

// One component, in one compartment.
flexos_kernel::components! {
    components: [APP = "app"],
    splits: [[("app", ["app"])]],
}

fn main(args: &Args) -> i32 {
    let boot = boot_info();
    println!(
        "Hello from FlexOS compartment {} of {}!",
        boot.compartment_id, boot.compartment_count
    );

    // Collected on the heap on purpose: the first boot exercises the allocator.
    let list: Vec<&str> = args.iter().collect();
    if list.is_empty() {
        println!("args: (none)");
    } else {
        println!("args: {}", list.join(" "));
    }

    let code = match args.get("exit") {
        None => 0,
        Some(text) => match text.parse::<u8>() {
            Ok(code) if u64::from(code) <= EXIT_CODE_MAX && !text.starts_with('+') => {
                i32::from(code)
            }
            _ => {
                println!("hello: bad exit code '{text}' (want 0..={EXIT_CODE_MAX})");
                return 1;
            }
        },
    };

    if let Some(mode) = args.get("print") {
        match mode {
            "flood" => print_flood(),
            "escapes" => print_escapes(),
            "split-utf8" => print_split_utf8(),
            _ => {
                println!("hello: unknown print mode '{mode}' (want flood|escapes|split-utf8)");
                return 1;
            }
        }
    }

    if let Some(how) = args.get("spin") {
        if how != "forever" {
            println!("hello: unknown spin '{how}' (want forever)");
            return 1;
        }
        println!("hello: spinning");
        loop {
            core::hint::spin_loop();
        }
    }

    if let Some(name) = args.get("crash") {
        let Some(mode) = CrashMode::parse(name) else {
            println!(
                "hello: unknown crash mode '{name}' (want null|ud|stack-overflow|wild-gpa|panic)"
            );
            return 1;
        };
        println!("hello: crashing with {name}");
        // The dispatcher: each crash function is called straight from `main`, so the
        // backtrace reads `main -> crash_<mode>` however it is symbolized.
        match mode {
            CrashMode::Null => crash_null(),
            CrashMode::Ud => crash_ud(),
            CrashMode::StackOverflow => {
                let depth = crash_stack_overflow(0);
                panic!("hello: stack overflow survived {depth} frames");
            }
            CrashMode::WildGpa => crash_wild_gpa(),
            CrashMode::Panic => crash_panic(),
        }
    }

    code
}

/// Size of the `print=flood` line.
const FLOOD_BYTES: usize = 64 << 20;

/// Prints [`FLOOD_BYTES`] of `A` without a newline, a console buffer at a time.
fn print_flood() {
    let chunk = [b'A'; CONSOLE_MAX as usize];
    for _ in 0..FLOOD_BYTES / chunk.len() {
        console::write_bytes(&chunk);
    }
}

/// Prints text that would drive a terminal (colour, cursor moves, erasing the line, a
/// forged monitor error), then panics with such a message.
fn print_escapes() -> ! {
    println!("esc:\x1b[31mred\x1b[0m cr:\r nul:\0 del:\x7f csi:\u{9b}2J bidi:\u{202e}olleh");
    console::write_bytes(b"invalid:\xff\xfe\xc3( end\n");
    println!("\x1b[1A\x1b[2K\rflexos-vmm: error: forged by the guest");
    panic!("\x1b[2K\rflexos-vmm: error: forged panic\nsecond line");
}

/// Sends characters of 2 and 4 bytes split across console writes, and a sequence that
/// turns out invalid.
fn print_split_utf8() {
    for part in [
        &b"split: caf\xc3"[..],
        b"\xa9 \xf0\x9f",
        b"\x98",
        b"\x80 end\n",
    ] {
        console::write_bytes(part);
        console::flush();
    }
    console::write_bytes(b"cut: \xe2\x82");
    console::flush();
    console::write_bytes(b"x\n");
}

/// The ways `hello` can crash on request.
#[derive(Clone, Copy)]
enum CrashMode {
    Null,
    Ud,
    StackOverflow,
    WildGpa,
    Panic,
}

impl CrashMode {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "null" => CrashMode::Null,
            "ud" => CrashMode::Ud,
            "stack-overflow" => CrashMode::StackOverflow,
            "wild-gpa" => CrashMode::WildGpa,
            "panic" => CrashMode::Panic,
            _ => return None,
        })
    }
}

/// Reads a u64 at address 0: page 0 is never mapped, so this is a #PF with CR2 = 0.
///
/// The volatile read is written in `asm!` because `ptr::read_volatile` on null is
/// undefined behaviour in Rust (and a debug-build precondition panic, not a fault), and
/// so that the faulting instruction belongs to this function, not to an inlined
/// `core::ptr` helper, whichever way the monitor symbolizes it.
#[inline(never)]
fn crash_null() -> ! {
    let addr: usize = black_box(0);
    let value: u64;
    // SAFETY: deliberately faults: page 0 is unmapped. The load has no other effect.
    unsafe {
        asm!(
            "mov {value}, qword ptr [{addr}]",
            addr = in(reg) addr,
            value = out(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    panic!("hello: read {value:#x} at address 0 without a fault");
}

/// Executes `ud2`: #UD.
#[inline(never)]
fn crash_ud() -> ! {
    // SAFETY: deliberately raises #UD; the monitor's trampoline reports it and the
    // compartment never resumes.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Recurses with a 4 KiB frame each time until the stack runs into the unmapped guard
/// page below it: #PF. The recursion is not a tail call (the result is used after it
/// returns) and the array goes through `black_box`, so neither can be optimised away.
/// The array is left uninitialised (no `memset` call), so the faulting access is always
/// in this function: its stack probe, a push, or its `call`.
#[inline(never)]
fn crash_stack_overflow(depth: u64) -> u64 {
    let mut frame = [MaybeUninit::<u8>::uninit(); 4096];
    let slot = depth as usize % frame.len();
    frame[slot].write(depth as u8);
    let frame = black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = crash_stack_overflow(depth + 1);
    // SAFETY: `slot` was written above; `black_box` only hides the array from the
    // optimiser and never changes it.
    below.wrapping_add(u64::from(unsafe { frame[slot].assume_init() }))
}

/// Reads a u64 just past private memory: `align_up(mem_size, 2 MiB) + 2 MiB` is mapped by
/// the monitor's page tables but backed by nothing, so the access exits to the monitor
/// as MMIO, which reports it as an isolation violation. The read is in `asm!` for the
/// same reason as in [`crash_null`].
#[inline(never)]
fn crash_wild_gpa() -> ! {
    let mem_size = boot_info().mem_size;
    let addr = mem_size.next_multiple_of(LARGE_PAGE_SIZE) + LARGE_PAGE_SIZE;
    let value: u64;
    // SAFETY: deliberately reads guest-physical memory that is not ours; the monitor
    // stops the compartment on it. The load has no other effect.
    unsafe {
        asm!(
            "mov {value}, qword ptr [{addr}]",
            addr = in(reg) black_box(addr),
            value = out(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    panic!("hello: read {value:#x} at {addr:#x} outside private memory without a violation");
}

/// Panics: the panic handler reports message and location to the monitor.
#[inline(never)]
fn crash_panic() -> ! {
    panic!("hello: crash=panic requested");
}
