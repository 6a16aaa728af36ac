//! Crafted guests: tiny hand-assembled images (no guest kernel) that talk to the monitor
//! directly, to check that every hypercall argument is validated and that a misbehaving
//! guest is reported as a crash (exit 70, one report) and never takes the monitor down.
//! Covers a clean console write + exit, each malformed hypercall the monitor refuses,
//! ports outside the hypercall range, and accesses the page tables forbid.

use flexos_e2e::{ElfBuilder, Outcome, TempDir, EXIT_CRASH, IMAGE_BASE};

const PORT_CONSOLE: u32 = 0x0F00;
const PORT_EXIT: u32 = 0x0F01;
const PORT_EXCEPTION: u32 = 0x0F02;
const PORT_PANIC: u32 = 0x0F03;
const PORT_MILESTONE: u32 = 0x0F04;
const PORT_DOORBELL: u32 = 0x0F05;
const PORT_SLEEP: u32 = 0x0F06;

/// Where the argument blocks go: the second half of the image's only page.
const DATA: u64 = IMAGE_BASE + 0x800;

/// x86-64 machine code, a few instructions at a time.
#[derive(Default)]
struct Asm(Vec<u8>);

impl Asm {
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// `mov eax, imm32; mov edx, port; out dx, eax`: a hypercall.
    fn out32(self, port: u32, value: u32) -> Self {
        self.bytes(&[0xb8])
            .bytes(&value.to_le_bytes())
            .bytes(&[0xba])
            .bytes(&port.to_le_bytes())
            .bytes(&[0xef])
    }
    /// `ud2`, so that falling through is visible.
    fn ud2(self) -> Self {
        self.bytes(&[0x0f, 0x0b])
    }
}

/// Boots a one-page image holding `code` at its start and `data` at [`DATA`].
fn boot(code: Asm, data: &[u8]) -> Outcome {
    let mut page = vec![0u8; 0x1000];
    assert!(code.0.len() <= 0x800 && data.len() <= 0x800);
    page[..code.0.len()].copy_from_slice(&code.0);
    page[0x800..0x800 + data.len()].copy_from_slice(data);
    let dir = TempDir::new("guest");
    let path = ElfBuilder::new().code(&page).write(&dir, "guest.elf");
    flexos_e2e::run([path])
}

/// Little-endian u64 words, for argument blocks.
fn words(ws: &[u64]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Asserts a crash whose one-line headline contains every needle.
#[track_caller]
fn assert_crash(out: &Outcome, needles: &[&str]) {
    out.assert_status(EXIT_CRASH);
    assert!(out.stdout.is_empty(), "{out:?}");
    let headline = out.stderr.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with("flexos-vmm: compartment 0 (app) crashed: "),
        "{out:?}"
    );
    for needle in needles {
        assert!(
            headline.contains(needle),
            "headline should contain {needle:?}\n{out:?}"
        );
    }
    out.assert_stderr_contains("\n  backtrace:\n");
    out.assert_stderr_contains("\n  last console lines:\n");
}

#[test]
fn console_write_and_exit() {
    // ConsoleWrite { buf: DATA + 0x100, len: 3 } at DATA, ExitArgs { code: 42 } at DATA+16.
    let mut data = words(&[DATA + 0x100, 3, 42]);
    data.resize(0x100, 0);
    data.extend_from_slice(b"hi\n");
    let code = Asm::default()
        .out32(PORT_CONSOLE, DATA as u32)
        .out32(PORT_EXIT, DATA as u32 + 16)
        .ud2();
    let out = boot(code, &data);
    out.assert_status(42)
        .assert_stdout_lines(&["hi"])
        .assert_stderr_empty();
}

#[test]
fn doorbell_and_capped_sleep_return_to_the_guest() {
    // Ring our own doorbell (caught by the ioeventfd), sleep with an absurd timeout
    // (the monitor caps it, and the pending ring ends it at once), sleep again with
    // nothing pending (the cap ends it), then exit 9.
    let data = words(&[u64::MAX, 9]);
    let code = Asm::default()
        .out32(PORT_DOORBELL, 0)
        .out32(PORT_SLEEP, DATA as u32)
        .out32(PORT_SLEEP, DATA as u32)
        .out32(PORT_EXIT, DATA as u32 + 8)
        .ud2();
    boot(code, &data).assert_status(9).assert_stderr_empty();
}

#[test]
fn doorbell_for_a_missing_compartment() {
    let out = boot(Asm::default().out32(PORT_DOORBELL, 5).ud2(), &[]);
    assert_crash(
        &out,
        &[
            "invalid hypercall",
            "doorbell for compartment 5",
            "the run has 1",
        ],
    );
}

#[test]
fn syscall_is_named_in_the_report() {
    // nop; syscall; ud2 -- the report points at the syscall instruction itself.
    let out = boot(Asm::default().bytes(&[0x90, 0x0f, 0x05]).ud2(), &[]);
    assert_crash(
        &out,
        &[
            "executed `syscall` at 0x100001 (no symbol)",
            "hypercalls, not system calls",
        ],
    );
    assert!(
        out.stderr.contains("rip 0x0000000000100001"),
        "RIP is the syscall instruction\n{out:?}"
    );
}

#[test]
fn exit_code_out_of_range() {
    let out = boot(
        Asm::default().out32(PORT_EXIT, DATA as u32).ud2(),
        &words(&[64]),
    );
    assert_crash(&out, &["invalid hypercall", "exit code 64", "0..=63"]);
}

#[test]
fn argument_block_outside_memory() {
    for addr in [0x50, 0xffff_fff8] {
        let out = boot(Asm::default().out32(PORT_CONSOLE, addr).ud2(), &[]);
        let want = format!("argument block at {addr:#x} is outside the compartment's memory");
        assert_crash(&out, &["invalid hypercall", &want]);
    }
}

#[test]
fn console_buffer_outside_memory() {
    let code = Asm::default().out32(PORT_CONSOLE, DATA as u32).ud2();
    let out = boot(code, &words(&[0x8000_0000, 3]));
    assert_crash(&out, &["invalid hypercall", "0x80000000+3", "outside"]);
}

#[test]
fn console_write_too_long() {
    let code = Asm::default().out32(PORT_CONSOLE, DATA as u32).ud2();
    let out = boot(code, &words(&[DATA, 5000]));
    assert_crash(&out, &["invalid hypercall", "5000 bytes", "limit"]);
}

#[test]
fn panic_text_too_long() {
    let code = Asm::default().out32(PORT_PANIC, DATA as u32).ud2();
    let out = boot(code, &words(&[DATA, 1 << 63, DATA, 1, 1]));
    assert_crash(&out, &["invalid hypercall", "panic message", "limit"]);
}

#[test]
fn unknown_milestone() {
    let code = Asm::default().out32(PORT_MILESTONE, DATA as u32).ud2();
    let out = boot(code, &words(&[7, 0]));
    assert_crash(&out, &["invalid hypercall", "milestone id 7"]);
}

#[test]
fn forged_exception_report_from_ring_3() {
    let code = Asm::default().out32(PORT_EXCEPTION, DATA as u32).ud2();
    let out = boot(code, &[0; 256]);
    assert_crash(
        &out,
        &[
            "invalid hypercall",
            "did not come from a monitor trampoline",
        ],
    );
}

#[test]
fn sixteen_bit_out() {
    // mov eax, DATA; mov edx, PORT_EXIT; out dx, ax
    let code = Asm::default()
        .bytes(&[0xb8])
        .bytes(&(DATA as u32).to_le_bytes())
        .bytes(&[0xba])
        .bytes(&PORT_EXIT.to_le_bytes())
        .bytes(&[0x66, 0xef])
        .ud2();
    let out = boot(code, &words(&[1]));
    assert_crash(&out, &["invalid hypercall", "2-byte value", "32-bit out"]);
}

#[test]
fn read_from_a_hypercall_port() {
    // mov edx, PORT_CONSOLE; in eax, dx
    let code = Asm::default()
        .bytes(&[0xba])
        .bytes(&PORT_CONSOLE.to_le_bytes())
        .bytes(&[0xed])
        .ud2();
    let out = boot(code, &[]);
    assert_crash(&out, &["read from I/O port 0xf00"]);
}

#[test]
fn ports_outside_the_hypercall_range_fault() {
    for port in [0x80, 0x3f8, 0xcf8] {
        let out = boot(Asm::default().out32(port, 0).ud2(), &[]);
        assert_crash(&out, &["general protection fault (#GP)"]);
    }
}

#[test]
fn privileged_instruction_faults() {
    let out = boot(Asm::default().bytes(&[0xf4]).ud2(), &[]); // hlt
    assert_crash(&out, &["general protection fault (#GP)"]);
}

#[test]
fn writing_own_text_is_a_permission_fault() {
    // mov dword ptr [IMAGE_BASE], 0
    let code = Asm::default()
        .bytes(&[0xc7, 0x04, 0x25])
        .bytes(&(IMAGE_BASE as u32).to_le_bytes())
        .bytes(&[0, 0, 0, 0])
        .ud2();
    let out = boot(code, &[]);
    assert_crash(&out, &["page fault (#PF)"]);
    out.assert_stderr_contains(
        "fault address (CR2): 0x0000000000100000: write of a page whose permissions forbid it in user mode",
    );
}

#[test]
fn reading_the_monitor_area_is_a_page_fault() {
    // mov rax, qword ptr [0x1000]
    let code = Asm::default()
        .bytes(&[0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00])
        .ud2();
    let out = boot(code, &[]);
    assert_crash(&out, &["page fault (#PF)"]);
    out.assert_stderr_contains("fault address (CR2): 0x0000000000001000: read of a page");
    out.assert_stderr_contains("monitor's area");
}

#[test]
fn divide_by_zero() {
    // xor ecx, ecx; div ecx
    let out = boot(Asm::default().bytes(&[0x31, 0xc9, 0xf7, 0xf1]).ud2(), &[]);
    assert_crash(&out, &["divide error (#DE)"]);
}

#[test]
fn breakpoint() {
    let out = boot(Asm::default().bytes(&[0xcc]).ud2(), &[]); // int3
    assert_crash(&out, &["breakpoint (#BP)"]);
}

/// Unbacked guest-physical memory the page tables map (past the default 64 MiB).
const UNBACKED: u64 = 0x420_0000;

#[test]
fn instructions_kvm_cannot_emulate_on_unbacked_memory_are_violations() {
    // Each on [rax] with rax = UNBACKED: kvm-pvm's emulator gives up on all of them,
    // which used to end the run with 71 "KVM internal error" and no report.
    let cases: &[(&str, &[u8])] = &[
        ("addps", &[0x0f, 0x58, 0x00]),
        ("pshufb", &[0x66, 0x0f, 0x38, 0x00, 0x00]),
        ("pcmpeqb", &[0x66, 0x0f, 0x74, 0x00]),
        ("popcnt", &[0xf3, 0x48, 0x0f, 0xb8, 0x00]),
        ("crc32", &[0xf2, 0x0f, 0x38, 0xf0, 0x00]),
        ("lddqu", &[0xf2, 0x0f, 0xf0, 0x00]),
        ("movntdqa", &[0x66, 0x0f, 0x38, 0x2a, 0x00]),
        ("aesenc", &[0x66, 0x0f, 0x38, 0xdc, 0x00]),
        ("fld", &[0xd9, 0x00]),
        ("fisttp", &[0xdd, 0x08]),
        ("fnstenv", &[0xd9, 0x30]),
        ("fxsave", &[0x0f, 0xae, 0x00]),
        ("fxrstor", &[0x0f, 0xae, 0x08]),
        ("paddb", &[0x0f, 0xfc, 0x00]),
    ];
    for (name, insn) in cases {
        // movabs rax, UNBACKED; <insn>; ud2
        let code = Asm::default()
            .bytes(&[0x48, 0xb8])
            .bytes(&UNBACKED.to_le_bytes())
            .bytes(insn)
            .ud2();
        let out = boot(code, &[]);
        out.assert_status(EXIT_CRASH);
        let hex: Vec<String> = insn.iter().map(|b| format!("{b:02x}")).collect();
        let want = format!(
            "flexos-vmm: compartment 0 (app) violated isolation: instruction {}, which the \
             monitor cannot emulate, accessed guest-physical {UNBACKED:#x}, which is neither \
             its memory nor a device it owns, at 0x10000a (no symbol)",
            hex.join(" ")
        );
        assert_eq!(out.stderr.lines().next(), Some(&*want), "{name}\n{out:?}");
        out.assert_stderr_contains("    rip 0x000000000010000a");
        out.assert_stderr_contains("\n  backtrace:\n");
    }
}
