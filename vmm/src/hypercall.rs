//! Decoding and validation of guest hypercalls (`out` to the abi port range).
//!
//! Nothing a guest writes is trusted: every argument block and every buffer it points at
//! must lie inside memory the compartment may use, and lengths are capped. A malformed
//! call is a guest fault the monitor reports; it never panics the monitor.

use flexos_abi::{
    ConsoleWrite, ExceptionFrame, ExitArgs, MilestoneArgs, PanicArgs, SleepArgs, CONSOLE_MAX,
    EXIT_CODE_MAX, MILESTONE_MAIN, PANIC_TEXT_MAX, PORT_CONSOLE, PORT_DOORBELL, PORT_EXCEPTION,
    PORT_EXIT, PORT_MILESTONE, PORT_PANIC, PORT_SLEEP, SLEEP_MAX_US,
};
use std::ops::Range;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::escape;
use crate::pod::Pod;

use crate::arch::layout::{IST1_TOP, IST2_TOP};

/// A decoded, validated hypercall.
#[derive(Debug)]
pub enum Hypercall {
    Console(Vec<u8>),
    Exit(u8),
    /// A trampoline reported an exception; `at` is the frame's guest-physical address.
    Exception {
        frame: ExceptionFrame,
        at: u64,
    },
    Panic {
        message: String,
        file: String,
        line: u32,
        column: u32,
    },
    /// The guest is about to call the app's `main`.
    MainReached,
    /// Wake compartment `target` (reaches the monitor only when no ioeventfd caught it).
    Doorbell(u32),
    /// Sleep until the doorbell rings, at most this many microseconds.
    Sleep(u64),
}

/// The memory a compartment's hypercalls may point into: its user-visible ranges
/// (boot info and image, data window, shared region).
#[derive(Clone, Debug)]
pub struct GuestBounds {
    pub ranges: [Range<u64>; 3],
    /// Number of compartments: doorbell targets are `0..compartments`.
    pub compartments: u32,
}

impl GuestBounds {
    /// True when `addr .. addr + len` lies inside one user-visible range.
    fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.ranges.iter().any(|r| addr >= r.start && end <= r.end)
    }
}

/// Why a hypercall was refused; the report shows it after "invalid hypercall: ".
#[derive(Debug, thiserror::Error)]
pub enum HypercallError {
    #[error("hypercall on port {port:#x} with a {len}-byte value; use a 32-bit out")]
    ValueWidth { port: u16, len: usize },

    #[error("{what} argument block at {gpa:#x} is outside the compartment's memory")]
    BlockOutside { what: &'static str, gpa: u64 },

    #[error("{what} argument block at {gpa:#x} unreadable: {source}")]
    BlockUnreadable {
        what: &'static str,
        gpa: u64,
        #[source]
        source: GuestMemoryError,
    },

    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },

    #[error("{what} buffer {addr:#x}+{len} is outside the compartment's memory")]
    BufferOutside {
        what: &'static str,
        addr: u64,
        len: u64,
    },

    #[error("{what} buffer {addr:#x}+{len} unreadable: {source}")]
    BufferUnreadable {
        what: &'static str,
        addr: u64,
        len: u64,
        #[source]
        source: GuestMemoryError,
    },

    #[error("exit code {0} is out of range 0..={EXIT_CODE_MAX}")]
    ExitCode(u64),

    #[error("unknown milestone id {0}")]
    Milestone(u64),

    #[error("doorbell for compartment {target}, but the run has {count}")]
    Doorbell { target: u64, count: u32 },

    #[error("exception report that did not come from a monitor trampoline")]
    ForgedException,

    #[error("exception frame unreadable: {0}")]
    ExceptionFrame(#[source] GuestMemoryError),

    #[error("write to I/O port {0:#x}, which is not a hypercall port and no device owns")]
    NotAHypercall(u16),
}

type Result<T> = std::result::Result<T, HypercallError>;

fn read_block<T>(
    mem: &GuestMemoryMmap,
    bounds: &GuestBounds,
    gpa: u64,
    what: &'static str,
) -> Result<T>
where
    Pod<T>: ByteValued,
{
    let len = std::mem::size_of::<T>() as u64;
    if !bounds.contains(gpa, len) {
        return Err(HypercallError::BlockOutside { what, gpa });
    }
    mem.read_obj::<Pod<T>>(GuestAddress(gpa))
        .map(|b| b.0)
        .map_err(|source| HypercallError::BlockUnreadable { what, gpa, source })
}

fn read_buf(
    mem: &GuestMemoryMmap,
    bounds: &GuestBounds,
    addr: u64,
    len: u64,
    max: u64,
    what: &'static str,
) -> Result<Vec<u8>> {
    if len > max {
        return Err(HypercallError::TooLong { what, len, max });
    }
    if !bounds.contains(addr, len) {
        return Err(HypercallError::BufferOutside { what, addr, len });
    }
    // Cannot fail: len <= max, a small constant.
    let size = usize::try_from(len).map_err(|_| HypercallError::TooLong { what, len, max })?;
    let mut buf = vec![0u8; size];
    mem.read_slice(&mut buf, GuestAddress(addr))
        .map_err(|source| HypercallError::BufferUnreadable {
            what,
            addr,
            len,
            source,
        })?;
    Ok(buf)
}

/// Decodes the hypercall `port` with value `data`. `cpl` is the privilege level the
/// `out` came from: only the ring-0 trampolines may report exceptions.
pub fn decode(
    mem: &GuestMemoryMmap,
    bounds: &GuestBounds,
    port: u16,
    data: &[u8],
    cpl: u8,
) -> Result<Hypercall> {
    let value = match data {
        [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]) as u64,
        _ => {
            return Err(HypercallError::ValueWidth {
                port,
                len: data.len(),
            })
        }
    };
    match port {
        PORT_CONSOLE => {
            let args: ConsoleWrite = read_block(mem, bounds, value, "console write")?;
            read_buf(
                mem,
                bounds,
                args.buf,
                args.len,
                CONSOLE_MAX,
                "console write",
            )
            .map(Hypercall::Console)
        }
        PORT_EXIT => {
            let args: ExitArgs = read_block(mem, bounds, value, "exit")?;
            let code = u8::try_from(args.code)
                .ok()
                .filter(|&c| u64::from(c) <= EXIT_CODE_MAX)
                .ok_or(HypercallError::ExitCode(args.code))?;
            Ok(Hypercall::Exit(code))
        }
        PORT_PANIC => {
            let args: PanicArgs = read_block(mem, bounds, value, "panic")?;
            // Guest text: escaped here (control characters, invalid UTF-8), so it is
            // safe wherever it is shown.
            let text = |addr, len, what| {
                read_buf(mem, bounds, addr, len, PANIC_TEXT_MAX, what).map(|b| escape::bytes(&b))
            };
            Ok(Hypercall::Panic {
                message: text(args.msg, args.msg_len, "panic message")?,
                file: text(args.file, args.file_len, "panic file name")?,
                line: args.line,
                column: args.column,
            })
        }
        PORT_MILESTONE => {
            let args: MilestoneArgs = read_block(mem, bounds, value, "milestone")?;
            match args.id {
                MILESTONE_MAIN => Ok(Hypercall::MainReached),
                id => Err(HypercallError::Milestone(id)),
            }
        }
        PORT_DOORBELL => {
            let target = u32::try_from(value)
                .ok()
                .filter(|&t| t < bounds.compartments)
                .ok_or(HypercallError::Doorbell {
                    target: value,
                    count: bounds.compartments,
                })?;
            Ok(Hypercall::Doorbell(target))
        }
        PORT_SLEEP => {
            let args: SleepArgs = read_block(mem, bounds, value, "sleep")?;
            Ok(Hypercall::Sleep(args.timeout_us.min(SLEEP_MAX_US)))
        }
        PORT_EXCEPTION => {
            let frame_len = std::mem::size_of::<ExceptionFrame>() as u64;
            if cpl != 0 || (value != IST1_TOP - frame_len && value != IST2_TOP - frame_len) {
                return Err(HypercallError::ForgedException);
            }
            mem.read_obj::<Pod<ExceptionFrame>>(GuestAddress(value))
                .map(|b| Hypercall::Exception {
                    frame: b.0,
                    at: value,
                })
                .map_err(HypercallError::ExceptionFrame)
        }
        _ => Err(HypercallError::NotAHypercall(port)),
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the tests narrow small known addresses and random words into port values on purpose"
)]
mod tests {
    use super::*;
    use crate::arch::layout::MemoryPlan;
    use crate::memory::{compartment_memory, SharedRegion};
    use flexos_abi::{BOOT_INFO_ADDR, DATA_WINDOW_BASE, SHARED_BASE};

    fn setup() -> (GuestMemoryMmap, GuestBounds) {
        let shared = SharedRegion::new(2 << 20, 2).unwrap();
        let plan = MemoryPlan::new(8 << 20, 0x10_1000, 2).unwrap();
        let mem = compartment_memory(&plan, 0, &shared).unwrap();
        (
            mem,
            GuestBounds {
                ranges: [
                    BOOT_INFO_ADDR..0x10_1000,
                    plan.data_window(0),
                    SHARED_BASE..SHARED_BASE + (2 << 20),
                ],
                compartments: 2,
            },
        )
    }

    fn put<T>(mem: &GuestMemoryMmap, gpa: u64, v: T)
    where
        Pod<T>: ByteValued,
    {
        mem.write_obj(Pod(v), GuestAddress(gpa)).unwrap();
    }

    const A: u64 = DATA_WINDOW_BASE + 0x1000;

    #[test]
    fn console_write_reads_the_buffer() {
        let (mem, b) = setup();
        mem.write_slice(b"hi\n", GuestAddress(A + 0x100)).unwrap();
        put(
            &mem,
            A,
            ConsoleWrite {
                buf: A + 0x100,
                len: 3,
            },
        );
        let hc = decode(&mem, &b, PORT_CONSOLE, &(A as u32).to_le_bytes(), 3).unwrap();
        assert!(matches!(hc, Hypercall::Console(v) if v == b"hi\n"));
    }

    #[test]
    fn hostile_arguments_are_rejected() {
        let (mem, b) = setup();
        let v = (A as u32).to_le_bytes();
        put(
            &mem,
            A,
            ConsoleWrite {
                buf: A,
                len: CONSOLE_MAX + 1,
            },
        );
        assert!(decode(&mem, &b, PORT_CONSOLE, &v, 3)
            .unwrap_err()
            .to_string()
            .contains("exceeds"));
        put(
            &mem,
            A,
            ConsoleWrite {
                buf: u64::MAX - 1,
                len: 16,
            },
        );
        assert!(decode(&mem, &b, PORT_CONSOLE, &v, 3)
            .unwrap_err()
            .to_string()
            .contains("outside"));
        put(
            &mem,
            A,
            ConsoleWrite {
                buf: 0x1000,
                len: 16,
            },
        );
        assert!(
            decode(&mem, &b, PORT_CONSOLE, &v, 3)
                .unwrap_err()
                .to_string()
                .contains("outside"),
            "VMM area"
        );
        assert!(decode(&mem, &b, PORT_CONSOLE, &0xFFFF_FFF0u32.to_le_bytes(), 3).is_err());
        put(&mem, A, ExitArgs { code: 64 });
        assert!(decode(&mem, &b, PORT_EXIT, &v, 3)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(decode(&mem, &b, PORT_CONSOLE, &[1], 3).is_err());
        assert!(decode(&mem, &b, 0x60, &v, 3)
            .unwrap_err()
            .to_string()
            .contains("not a hypercall port"));
    }

    #[test]
    fn random_argument_blocks_never_panic_the_decoder() {
        let (mem, b) = setup();
        let mut rng = crate::testing::Rng::new(3);
        let ports = [
            PORT_CONSOLE,
            PORT_EXIT,
            PORT_EXCEPTION,
            PORT_PANIC,
            PORT_MILESTONE,
            PORT_DOORBELL,
            PORT_SLEEP,
        ];
        for _ in 0..20_000 {
            let mut block = [0u8; 64];
            for w in block.chunks_mut(8) {
                // Mostly plausible addresses and lengths, sometimes garbage.
                let v = match rng.below(3) {
                    0 => A + rng.below(0x3000),
                    1 => rng.below(5000),
                    _ => rng.next(),
                };
                w.copy_from_slice(&v.to_le_bytes());
            }
            mem.write_slice(&block, GuestAddress(A)).unwrap();
            let port = ports[rng.index(ports.len())];
            let value = match rng.below(3) {
                0 => A as u32,
                1 => rng.next() as u32,
                _ => (IST1_TOP - 72) as u32,
            };
            let _ = decode(&mem, &b, port, &value.to_le_bytes(), rng.below(4) as u8);
        }
    }

    #[test]
    fn doorbell_and_sleep_are_checked() {
        let (mem, b) = setup();
        assert!(matches!(
            decode(&mem, &b, PORT_DOORBELL, &1u32.to_le_bytes(), 3),
            Ok(Hypercall::Doorbell(1))
        ));
        assert!(decode(&mem, &b, PORT_DOORBELL, &2u32.to_le_bytes(), 3)
            .unwrap_err()
            .to_string()
            .contains("has 2"));
        put(
            &mem,
            A,
            SleepArgs {
                timeout_us: u64::MAX,
            },
        );
        assert!(matches!(
            decode(&mem, &b, PORT_SLEEP, &(A as u32).to_le_bytes(), 3),
            Ok(Hypercall::Sleep(SLEEP_MAX_US))
        ));
    }

    #[test]
    fn other_compartments_memory_is_out_of_bounds() {
        let (mem, b) = setup();
        let plan = MemoryPlan::new(8 << 20, 0x10_1000, 2).unwrap();
        let other = plan.data_window(1).start;
        put(&mem, A, ConsoleWrite { buf: other, len: 8 });
        assert!(decode(&mem, &b, PORT_CONSOLE, &(A as u32).to_le_bytes(), 3)
            .unwrap_err()
            .to_string()
            .contains("outside"));
    }

    #[test]
    fn only_ring_zero_reports_exceptions() {
        let (mem, b) = setup();
        let frame = ((IST1_TOP - 72) as u32).to_le_bytes();
        assert!(decode(&mem, &b, PORT_EXCEPTION, &frame, 3).is_err());
        assert!(matches!(
            decode(&mem, &b, PORT_EXCEPTION, &frame, 0),
            Ok(Hypercall::Exception { .. })
        ));
        assert!(decode(&mem, &b, PORT_EXCEPTION, &(A as u32).to_le_bytes(), 0).is_err());
    }

    #[test]
    fn panic_text_is_escaped() {
        let (mem, b) = setup();
        mem.write_slice(b"\x1b[2K\rfake\n\xff", GuestAddress(A + 0x100))
            .unwrap();
        mem.write_slice(b"src/\x07.rs", GuestAddress(A + 0x200))
            .unwrap();
        put(
            &mem,
            A,
            PanicArgs {
                msg: A + 0x100,
                msg_len: 11,
                file: A + 0x200,
                file_len: 8,
                line: 1,
                column: 2,
            },
        );
        match decode(&mem, &b, PORT_PANIC, &(A as u32).to_le_bytes(), 3) {
            Ok(Hypercall::Panic { message, file, .. }) => {
                assert_eq!(message, "\\x1b[2K\\x0dfake\\x0a\\xff");
                assert_eq!(file, "src/\\x07.rs");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shared_region_buffers_are_allowed() {
        let (mem, b) = setup();
        mem.write_slice(b"shared\n", GuestAddress(SHARED_BASE))
            .unwrap();
        put(
            &mem,
            A,
            ConsoleWrite {
                buf: SHARED_BASE,
                len: 7,
            },
        );
        let hc = decode(&mem, &b, PORT_CONSOLE, &(A as u32).to_le_bytes(), 3).unwrap();
        assert!(matches!(hc, Hypercall::Console(v) if v == b"shared\n"));
    }
}
