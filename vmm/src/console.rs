//! A compartment's console: guest output goes to the monitor's stdout as it arrives, and
//! the last lines are kept for crash reports.
//!
//! The guest's bytes are untrusted, so what is shown is:
//! - escaped (see [`crate::escape`]): control characters and invalid UTF-8 never reach
//!   the terminal raw;
//! - bounded: a line longer than [`LINE_MAX`] guest bytes is broken there, ending in
//!   [`CONTINUES`] (`[+]`: "this line continues on the next one"), so a guest that never
//!   prints a newline cannot grow the monitor's memory; each remembered line keeps only
//!   its first [`TAIL_LINE_MAX`] bytes, so neither can it grow a crash report;
//! - whole: a multi-byte character split across two console writes is held back until
//!   its last byte arrives.

use std::collections::VecDeque;
use std::io::Write;

use crate::escape;

/// How many console lines a crash report shows.
pub const TAIL_LINES: usize = 10;
/// Guest bytes on one shown line before it is broken.
pub const LINE_MAX: usize = 4096;
/// Ends a line that was broken at [`LINE_MAX`] and continues on the next one.
pub const CONTINUES: &str = "[+]";
/// Bytes (escaped) kept of each line for the crash report; longer ones end in `…`.
pub const TAIL_LINE_MAX: usize = 200;

pub struct Console {
    /// Printed before every line when several compartments share stdout.
    prefix: Option<String>,
    tail: VecDeque<String>,
    /// The current line as the report shows it (escaped, at most ~TAIL_LINE_MAX bytes).
    line: String,
    /// The current line is longer than `line` holds.
    line_cut: bool,
    /// Guest bytes on the current line.
    line_bytes: usize,
    /// Something of the current line (at least its prefix) went out.
    started: bool,
    /// The first bytes of a UTF-8 character whose rest has not arrived (at most 3).
    pending: Vec<u8>,
}

/// One unit of guest text: a character or a byte that is not valid UTF-8.
#[derive(Clone, Copy)]
enum Unit {
    Char(char),
    Invalid(u8),
}

impl Unit {
    fn guest_len(self) -> usize {
        match self {
            Unit::Char(c) => c.len_utf8(),
            Unit::Invalid(_) => 1,
        }
    }
}

impl Console {
    pub fn new(prefix: Option<String>) -> Self {
        Console {
            prefix,
            tail: VecDeque::with_capacity(TAIL_LINES),
            line: String::new(),
            line_cut: false,
            line_bytes: 0,
            started: false,
            pending: Vec::new(),
        }
    }

    /// Writes guest bytes to stdout and remembers the lines.
    pub fn write(&mut self, bytes: &[u8]) {
        let out = self.show(bytes);
        emit(&out);
    }

    /// What guest bytes look like on stdout; updates the remembered lines.
    fn show(&mut self, bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len() + 16);
        let joined;
        let mut rest = if self.pending.is_empty() {
            bytes
        } else {
            let mut j = std::mem::take(&mut self.pending);
            j.extend_from_slice(bytes);
            joined = j;
            &joined[..]
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    self.push_str(text, &mut out);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` promises `good` is UTF-8, so this never falls back.
                    self.push_str(std::str::from_utf8(good).unwrap_or_default(), &mut out);
                    match e.error_len() {
                        // The input ends inside a character: wait for its other bytes.
                        None => {
                            self.pending = bad.to_vec();
                            break;
                        }
                        Some(n) => {
                            for &b in &bad[..n] {
                                self.push(Unit::Invalid(b), &mut out);
                            }
                            rest = &bad[n..];
                        }
                    }
                }
            }
        }
        out
    }

    /// Shows bytes still held for an unfinished character (the guest is done writing).
    pub fn finish(&mut self) {
        let out = self.unhold();
        emit(&out);
    }

    fn unhold(&mut self) -> String {
        let mut out = String::new();
        for b in std::mem::take(&mut self.pending) {
            self.push(Unit::Invalid(b), &mut out);
        }
        out
    }

    fn push_str(&mut self, mut text: &str, out: &mut String) {
        while let Some(c) = text.chars().next() {
            // Runs of printable ASCII (most output) go in bulk, up to the line's end.
            let room = LINE_MAX - self.line_bytes;
            let run = text
                .bytes()
                .take(room)
                .take_while(|b| (b' '..=b'~').contains(b))
                .count();
            if run == 0 {
                self.push(Unit::Char(c), out);
                text = &text[c.len_utf8()..];
                continue;
            }
            let (plain, rest) = text.split_at(run);
            self.start(out);
            out.push_str(plain);
            let keep = TAIL_LINE_MAX.saturating_sub(self.line.len()).min(run);
            self.line.push_str(&plain[..keep]);
            self.line_cut |= keep < run;
            self.line_bytes += run;
            text = rest;
        }
    }

    fn push(&mut self, unit: Unit, out: &mut String) {
        if let Unit::Char('\n') = unit {
            self.start(out);
            out.push('\n');
            self.end_line();
            return;
        }
        if self.line_bytes + unit.guest_len() > LINE_MAX {
            out.push_str(CONTINUES);
            out.push('\n');
            self.remember(CONTINUES);
            self.end_line();
        }
        self.start(out);
        let at = out.len();
        match unit {
            Unit::Char(c) => escape::push_char(out, c),
            Unit::Invalid(b) => escape::push_invalid(out, b),
        }
        self.remember(&out[at..]);
        self.line_bytes += unit.guest_len();
    }

    fn start(&mut self, out: &mut String) {
        if !self.started {
            if let Some(p) = &self.prefix {
                out.push_str(p);
            }
            self.started = true;
        }
    }

    /// Adds shown text to the current line's report copy, up to its bound.
    fn remember(&mut self, shown: &str) {
        if self.line.len() < TAIL_LINE_MAX {
            self.line.push_str(shown);
        } else {
            self.line_cut = true;
        }
    }

    fn end_line(&mut self) {
        let line = self.current();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
        self.line.clear();
        self.line_cut = false;
        self.line_bytes = 0;
        self.started = false;
    }

    /// The current line as the report shows it.
    fn current(&self) -> String {
        let mut line = self.line.clone();
        if self.line_cut {
            line.push('…');
        }
        for &b in &self.pending {
            escape::push_invalid(&mut line, b);
        }
        line
    }

    /// The last lines, oldest first, including an unfinished one (each escaped and
    /// bounded).
    pub fn tail(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        if self.started || !self.pending.is_empty() {
            lines.push(self.current());
        }
        lines
    }
}

/// Console output goes to stdout; a closed or full-and-gone stdout loses it, it does
/// not stop the run.
fn emit(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_across_writes() {
        let mut c = Console::new(None);
        c.show(b"one\ntw");
        c.show(b"o\nthree");
        assert_eq!(c.tail(), ["one", "two", "three"]);
        for i in 0..20 {
            c.show(format!("l{i}\n").as_bytes());
        }
        let t = c.tail();
        assert_eq!(t.len(), TAIL_LINES);
        assert_eq!(t.last().unwrap(), "l19");
    }

    #[test]
    fn a_line_without_end_is_broken_and_bounded() {
        let mut c = Console::new(None);
        let chunk = vec![b'A'; 1000];
        for _ in 0..10_000 {
            c.show(&chunk);
        }
        // 10^7 bytes in 4096-byte lines: 2441 full ones and a partial one.
        assert!(c.line_bytes < LINE_MAX);
        let tail = c.tail();
        assert_eq!(tail.len(), TAIL_LINES + 1);
        let cut = format!("{}…", "A".repeat(TAIL_LINE_MAX));
        assert!(tail.iter().all(|l| *l == cut), "{tail:?}");
        assert!(c.line.len() <= TAIL_LINE_MAX + 16);
    }

    #[test]
    fn long_lines_break_with_the_marker() {
        let mut c = Console::new(None);
        let x = "x".repeat(LINE_MAX);
        assert_eq!(c.show(x.as_bytes()), x);
        assert_eq!(c.show(b"\n"), "\n", "exactly LINE_MAX bytes is one line");
        let mut long = x.clone().into_bytes();
        long.extend_from_slice(b"yz\n");
        assert_eq!(c.show(&long), format!("{x}{CONTINUES}\nyz\n"));
        // Escapes make the report copy longer than the guest bytes; its bound holds.
        let tail = c.tail();
        assert_eq!(tail.len(), 3);
        assert_eq!(tail[2], "yz");
        assert_eq!(tail[1], format!("{}…", &x[..TAIL_LINE_MAX]));
        c.show(&[0x1b; LINE_MAX + 1]);
        let tail = c.tail();
        assert!(tail[3].starts_with("\\x1b\\x1b") && tail[3].ends_with('…'));
        assert!(tail[3].len() <= TAIL_LINE_MAX + 8, "{}", tail[3].len());
        assert_eq!(tail[4], "\\x1b");
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_escaped() {
        let mut c = Console::new(None);
        let shown = c.show(b"\x1b[2K\rflexos-vmm: error: fake\x00\x7f\xc2\x9b\xff\n");
        assert_eq!(
            shown,
            "\\x1b[2K\\x0dflexos-vmm: error: fake\\x00\\x7f\\u{9b}\\xff\n"
        );
        assert_eq!(
            c.tail(),
            ["\\x1b[2K\\x0dflexos-vmm: error: fake\\x00\\x7f\\u{9b}\\xff"]
        );
    }

    #[test]
    fn a_character_split_across_writes_stays_whole() {
        let mut c = Console::new(None);
        assert_eq!(c.show(b"caf\xc3"), "caf");
        assert_eq!(c.tail(), ["caf\\xc3"], "a crash now shows the lone byte");
        assert_eq!(c.show(b"\xa9 \xf0\x9f"), "\u{e9} ");
        assert_eq!(c.show(b"\x98"), "");
        assert_eq!(c.show(b"\x80!\n"), "\u{1f600}!\n");
        assert_eq!(c.tail(), ["caf\u{e9} \u{1f600}!"]);
        // A sequence that turns out invalid is escaped, not dropped.
        c.show(b"\xe2\x82");
        c.show(b"x\n");
        assert_eq!(c.tail()[1], "\\xe2\\x82x");
        c.show(b"end\xe2");
        assert_eq!(c.unhold(), "\\xe2");
        assert_eq!(c.tail()[2], "end\\xe2");
    }

    #[test]
    fn the_prefix_starts_every_line() {
        let mut c = Console::new(Some("[a] ".into()));
        assert_eq!(c.show(b"x\n\nab"), "[a] x\n[a] \n[a] ab");
        assert_eq!(c.show(b"c\n"), "c\n");
    }

    /// Random text cut into random writes: whatever the cuts, valid text comes out as
    /// it went in (lines broken only at LINE_MAX, with the marker), and nothing shown
    /// holds a control character but the newline and tab.
    #[test]
    fn random_writes_keep_text_and_bounds() {
        let mut rng = crate::testing::Rng::new(8);
        let alphabet = [
            "a",
            "\u{e9}",
            "\u{1f600}",
            "\u{20ac}",
            " ",
            "\t",
            "\n",
            "\u{3b1}",
        ];
        for round in 0..200 {
            let mut text = String::new();
            for _ in 0..rng.below(20_000) {
                text.push_str(alphabet[rng.index(alphabet.len())]);
            }
            let mut c = Console::new(None);
            let mut shown = String::new();
            let mut rest = text.as_bytes();
            while !rest.is_empty() {
                let (now, later) = rest.split_at(1 + rng.index(rest.len().min(5000)));
                shown.push_str(&c.show(now));
                rest = later;
            }
            assert!(c.pending.is_empty(), "round {round}");
            assert_eq!(shown.replace("[+]\n", ""), text, "round {round}");
            for line in shown.lines() {
                let bytes = line.strip_suffix(CONTINUES).unwrap_or(line).len();
                assert!(bytes <= LINE_MAX, "round {round}: {bytes}");
                assert!(line.len() == bytes || bytes + 4 > LINE_MAX, "broken early");
            }
            assert!(c.tail().iter().all(|l| l.len() <= TAIL_LINE_MAX + 8));
        }
    }

    #[test]
    fn random_bytes_never_show_raw_controls() {
        let mut rng = crate::testing::Rng::new(9);
        let mut c = Console::new(Some("[x] ".into()));
        for _ in 0..2_000 {
            let chunk: Vec<u8> = (0..rng.below(300))
                .map(|_| rng.next().to_le_bytes()[0])
                .collect();
            let shown = c.show(&chunk);
            assert!(!shown
                .chars()
                .any(|ch| ch.is_control() && ch != '\n' && ch != '\t'));
            assert!(c.pending.len() <= 3);
            for line in c.tail() {
                assert!(!line.chars().any(|ch| ch.is_control() && ch != '\t'));
            }
        }
    }
}
