//! Crash and isolation-violation reports (docs/design.md, one VM per compartment): what happened, where
//! (symbolized), the registers, a frame-pointer backtrace, and the last console lines.

use std::fmt::Write;

use flexos_abi::{NULL_GUARD_END, SHARED_BASE};
use kvm_bindings::kvm_regs;

use crate::escape;
use crate::hypercall::HypercallError;
use crate::symbols::Symbolizer;

/// Frames walked before a backtrace is cut short. Deep recursion is folded when
/// rendered, so a stack overflow still shows the frames that started it.
pub const MAX_FRAMES: usize = 1024;

/// What went wrong in a compartment.
#[derive(Debug)]
pub enum CrashKind {
    /// A CPU exception delivered through a trampoline.
    Exception {
        vector: u64,
        error_code: u64,
        cr2: u64,
    },
    /// An access to guest-physical memory that is neither the compartment's nor a
    /// device's, or a write to a shared page it may only read; `owner` says whose
    /// memory it is (another compartment's, a channel between others, ...), if known;
    /// `len` is 0 when the access size is unknown (a page fault).
    Violation {
        gpa: u64,
        len: usize,
        write: bool,
        owner: Option<String>,
    },
    /// An instruction KVM could not emulate on memory the guest does not own (only
    /// such accesses reach the emulator); `gpa` is its operand's address where the
    /// instruction decodes, `owner` as for `Violation`.
    Unemulated {
        bytes: Vec<u8>,
        gpa: Option<u64>,
        owner: Option<String>,
    },
    /// A hypercall whose argument block or buffer (`what`, at `addr`, `len` bytes)
    /// reaches guest-physical `gpa`, which is `owner`'s (another pair's channel,
    /// another compartment's memory): the guest asked the monitor to read what it may
    /// not read itself, as much a violation as a direct access.
    HypercallViolation {
        what: String,
        addr: u64,
        len: u64,
        gpa: u64,
        owner: String,
    },
    /// The guest panicked.
    Panic {
        message: String,
        file: String,
        line: u32,
        column: u32,
    },
    /// KVM_EXIT_SHUTDOWN: a fault while delivering a fault.
    TripleFault,
    /// A hypercall the monitor refused.
    BadHypercall(HypercallError),
    /// The guest executed `syscall` (RIP is moved back onto it).
    Syscall,
    /// Any other exit the guest has no business causing.
    UnexpectedExit(String),
}

/// Facts about the compartment's address space that help explain a fault address.
#[derive(Clone, Debug)]
pub struct AddressMap {
    pub shared_size: u64,
    pub stack_guard: std::ops::Range<u64>,
    pub image: std::ops::Range<u64>,
}

/// Everything a report prints; collected on the vCPU thread, rendered once.
#[derive(Debug)]
pub struct CrashReport {
    pub compartment: u32,
    pub name: String,
    pub components: Vec<String>,
    pub kind: CrashKind,
    pub regs: kvm_regs,
    pub backtrace: Vec<u64>,
    /// The backtrace stopped at MAX_FRAMES with more frames left.
    pub truncated: bool,
    pub console_tail: Vec<String>,
    pub map: AddressMap,
}

/// Name and mnemonic of an exception vector.
pub fn exception_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("divide error", "#DE"),
        1 => ("debug exception", "#DB"),
        2 => ("non-maskable interrupt", "NMI"),
        3 => ("breakpoint", "#BP"),
        4 => ("overflow", "#OF"),
        5 => ("bound range exceeded", "#BR"),
        6 => ("invalid opcode", "#UD"),
        7 => ("device not available", "#NM"),
        8 => ("double fault", "#DF"),
        10 => ("invalid TSS", "#TS"),
        11 => ("segment not present", "#NP"),
        12 => ("stack-segment fault", "#SS"),
        13 => ("general protection fault", "#GP"),
        14 => ("page fault", "#PF"),
        16 => ("x87 floating-point exception", "#MF"),
        17 => ("alignment check", "#AC"),
        18 => ("machine check", "#MC"),
        19 => ("SIMD floating-point exception", "#XM"),
        21 => ("control protection", "#CP"),
        _ => ("reserved exception", "#??"),
    }
}

/// Explains a page-fault error code and address in words.
pub fn describe_page_fault(error_code: u64, cr2: u64, map: &AddressMap) -> String {
    let access = if error_code & 0x10 != 0 {
        "instruction fetch"
    } else if error_code & 0x2 != 0 {
        "write"
    } else {
        "read"
    };
    let cause = if error_code & 0x8 != 0 {
        "a reserved bit set in a page-table entry"
    } else if error_code & 0x1 != 0 {
        "a page whose permissions forbid it"
    } else {
        "a page that is not mapped"
    };
    let mode = if error_code & 0x4 != 0 {
        "user"
    } else {
        "supervisor"
    };
    let what = if cr2 < NULL_GUARD_END {
        "null pointer dereference".to_string()
    } else if map.stack_guard.contains(&cr2) {
        "stack overflow: hit the guard page below the stack".to_string()
    } else if cr2 < flexos_abi::VMM_AREA_END {
        "access to the monitor's area, which the guest may not touch".to_string()
    } else if map.image.contains(&cr2) {
        "access that the image's segment permissions forbid".to_string()
    } else if cr2 >= SHARED_BASE + map.shared_size {
        "address outside every mapping".to_string()
    } else {
        "unexpected fault in mapped memory".to_string()
    };
    format!("{access} of {cause} in {mode} mode ({what})")
}

/// Whose memory a violating access touched.
/// Whose memory a stray access touched, as the monitor described it (names inside
/// come from the image or a placement file: escaped like guest text).
fn whose(owner: &Option<String>) -> String {
    match owner {
        Some(what) => escape::line(what),
        None => "neither its memory nor a device it owns".to_string(),
    }
}

impl CrashReport {
    /// The headline, e.g. "crashed: page fault (#PF) at hello::crash_null+0x4 (...)".
    fn headline(&self, sym: &Symbolizer) -> String {
        let at = sym.place(self.regs.rip, false);
        match &self.kind {
            CrashKind::Exception { vector, .. } => {
                let (name, mnemonic) = exception_name(*vector);
                format!("crashed: {name} ({mnemonic}) at {at}")
            }
            CrashKind::Violation {
                gpa,
                len,
                write,
                owner,
            } => {
                let access = if *write { "write" } else { "read" };
                let size = if *len == 0 {
                    String::new()
                } else {
                    format!(" of {len} bytes")
                };
                format!(
                    "violated isolation: {access}{size} at guest-physical {gpa:#x}, which is {}, at {at}",
                    whose(owner)
                )
            }
            CrashKind::Unemulated { bytes, gpa, owner } => {
                let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let target = match gpa {
                    Some(gpa) => format!("guest-physical {gpa:#x}, which is {}", whose(owner)),
                    None => format!("memory that is {}", whose(owner)),
                };
                format!(
                    "violated isolation: instruction {}, which the monitor cannot emulate, accessed {target}, at {at}",
                    hex.join(" ")
                )
            }
            CrashKind::HypercallViolation {
                what,
                addr,
                len,
                gpa,
                owner,
            } => format!(
                "violated isolation: {what} {addr:#x}+{len} reaches guest-physical {gpa:#x}, which is {}, at {at}",
                escape::line(owner)
            ),
            CrashKind::Panic {
                message,
                file,
                line,
                column,
            } => {
                let (file, message) = (escape::line(file), escape::line(message));
                format!("panicked at {file}:{line}:{column}: {message}")
            }
            CrashKind::TripleFault => {
                format!("crashed: triple fault (a fault while handling a fault) at {at}")
            }
            CrashKind::Syscall => format!(
                "crashed: executed `syscall` at {at}; compartments talk to the monitor with hypercalls, not system calls"
            ),
            CrashKind::BadHypercall(why) => format!("crashed: invalid hypercall: {why}, at {at}"),
            CrashKind::UnexpectedExit(why) => format!("crashed: {why}, at {at}"),
        }
    }

    /// Renders the full report.
    pub fn render(&self, sym: &Symbolizer) -> String {
        let mut s = String::new();
        // Names come from the image or a placement file: shown escaped like guest text.
        let _ = writeln!(
            s,
            "flexos-vmm: compartment {} ({}) {}",
            self.compartment,
            escape::line(&self.name),
            self.headline(sym)
        );
        let components = if self.components.is_empty() {
            "(the image declares none)".to_string()
        } else {
            escape::line(&self.components.join(", "))
        };
        let _ = writeln!(s, "  components: {components}");
        if let CrashKind::Exception {
            vector,
            error_code,
            cr2,
        } = &self.kind
        {
            if *vector == 14 {
                let _ = writeln!(
                    s,
                    "  fault address (CR2): {cr2:#018x}: {}",
                    describe_page_fault(*error_code, *cr2, &self.map)
                );
            }
            if usize::try_from(*vector).is_ok_and(crate::arch::trampolines::has_error_code) {
                let _ = writeln!(s, "  error code: {error_code:#x}");
            }
        }
        let r = &self.regs;
        let _ = writeln!(s, "  registers:");
        let rows = [
            [
                ("rip", r.rip),
                ("rsp", r.rsp),
                ("rbp", r.rbp),
                ("rflags", r.rflags),
            ],
            [
                ("rax", r.rax),
                ("rbx", r.rbx),
                ("rcx", r.rcx),
                ("rdx", r.rdx),
            ],
            [("rsi", r.rsi), ("rdi", r.rdi), ("r8", r.r8), ("r9", r.r9)],
            [
                ("r10", r.r10),
                ("r11", r.r11),
                ("r12", r.r12),
                ("r13", r.r13),
            ],
        ];
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .map(|(n, v)| format!("{n:>6} {v:#018x}"))
                .collect();
            let _ = writeln!(s, "  {}", cells.join(" "));
        }
        let _ = writeln!(
            s,
            "  {:>6} {:#018x} {:>6} {:#018x}",
            "r14", r.r14, "r15", r.r15
        );
        let _ = writeln!(s, "  backtrace:");
        self.render_backtrace(&mut s, sym);
        let _ = writeln!(s, "  last console lines:");
        if self.console_tail.is_empty() {
            let _ = writeln!(s, "    (none)");
        }
        // The console already escaped and bounded these; escaping again changes nothing
        // and keeps this function safe for any producer.
        for line in &self.console_tail {
            let _ = writeln!(s, "    | {}", escape::line(line));
        }
        s
    }

    /// One line per frame; runs of the same function (deep recursion) fold into one.
    fn render_backtrace(&self, s: &mut String, sym: &Symbolizer) {
        let places: Vec<_> = self
            .backtrace
            .iter()
            .enumerate()
            .map(|(i, &pc)| (pc, sym.place(pc, i > 0)))
            .collect();
        let mut i = 0;
        while i < places.len() {
            let (pc, place) = &places[i];
            let same = places[i..]
                .iter()
                .take_while(|(_, p)| {
                    p.function.is_some()
                        && p.function.as_ref().map(|f| &f.0)
                            == place.function.as_ref().map(|f| &f.0)
                })
                .count();
            if same > 2 {
                let _ = writeln!(s, "    #{i:<3} {pc:#018x} {place}");
                let name = place.function.as_ref().map_or("??", |f| f.0.as_str());
                let _ = writeln!(
                    s,
                    "    #{}..#{}: {} more frames in {name} (recursion)",
                    i + 1,
                    i + same - 1,
                    same - 1
                );
                i += same;
                continue;
            }
            // The address is already on the line: unknown places say only that.
            if place.function.is_some() {
                let _ = writeln!(s, "    #{i:<3} {pc:#018x} {place}");
            } else {
                let _ = writeln!(s, "    #{i:<3} {pc:#018x} (no symbol)");
            }
            i += 1;
        }
        if self.truncated {
            let _ = writeln!(s, "    ... (stopped after {MAX_FRAMES} frames)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> AddressMap {
        AddressMap {
            shared_size: 16 << 20,
            stack_guard: 0x3eff000..0x3f00000,
            image: 0x100000..0x110000,
        }
    }

    #[test]
    fn page_faults_are_explained() {
        assert_eq!(
            describe_page_fault(0x4, 0, &map()),
            "read of a page that is not mapped in user mode (null pointer dereference)"
        );
        assert!(describe_page_fault(0x6, 0x3eff100, &map())
            .starts_with("write of a page that is not mapped"));
        assert!(describe_page_fault(0x6, 0x3eff100, &map()).contains("stack overflow"));
        assert!(describe_page_fault(0x7, 0x100010, &map()).contains("permissions forbid"));
        assert!(describe_page_fault(0x15, 0x100010, &map()).starts_with("instruction fetch"));
    }

    #[test]
    fn report_has_every_section() {
        let report = CrashReport {
            compartment: 1,
            name: "net".into(),
            components: vec!["net".into(), "netdev".into()],
            kind: CrashKind::Exception {
                vector: 14,
                error_code: 4,
                cr2: 0,
            },
            regs: kvm_regs {
                rip: 0x100123,
                ..Default::default()
            },
            backtrace: vec![0x100123, 0x100456, 0x100456, 0x100456, 0x100456],
            truncated: false,
            console_tail: vec!["hello".into()],
            map: map(),
        };
        let sym = Symbolizer::new(b"");
        let text = report.render(&sym);
        assert!(
            text.starts_with(
                "flexos-vmm: compartment 1 (net) crashed: page fault (#PF) at 0x100123 (no symbol)\n"
            ),
            "{text}"
        );
        assert!(text.contains("  components: net, netdev\n"));
        assert!(text.contains("fault address (CR2): 0x0000000000000000: read of a page that is not mapped in user mode (null pointer dereference)"));
        assert!(text.contains("    rip 0x0000000000100123"));
        assert!(text.contains("    | hello\n"));
        assert!(text.contains("#0   0x0000000000100123 (no symbol)\n"));
    }

    #[test]
    fn guest_text_cannot_forge_lines() {
        let report = CrashReport {
            compartment: 0,
            name: "a\x1b[31m".into(),
            components: vec!["c\r".into()],
            kind: CrashKind::Panic {
                message: "\x1b[1A\x1b[2K\rflexos-vmm: error: fake\nsecond".into(),
                file: "f\u{9b}.rs".into(),
                line: 1,
                column: 2,
            },
            regs: kvm_regs::default(),
            backtrace: vec![],
            truncated: false,
            console_tail: vec!["\x07bell".into()],
            map: map(),
        };
        let sym = Symbolizer::new(b"");
        let text = report.render(&sym);
        assert_eq!(
            text.lines().next().unwrap(),
            "flexos-vmm: compartment 0 (a\\x1b[31m) panicked at f\\u{9b}.rs:1:2: \\x1b[1A\\x1b[2K\\x0dflexos-vmm: error: fake\\x0asecond"
        );
        assert!(text.contains("  components: c\\x0d\n"));
        assert!(text.contains("    | \\x07bell\n"));
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }
}
