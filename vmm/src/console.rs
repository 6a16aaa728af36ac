//! A compartment's console: guest output goes to the monitor's stdout as it arrives, and
//! the last lines are kept for crash reports.

use std::collections::VecDeque;
use std::io::Write;

/// How many console lines a crash report shows.
pub const TAIL_LINES: usize = 10;

pub struct Console {
    /// Printed before every line when several compartments share stdout.
    prefix: Option<String>,
    tail: VecDeque<String>,
    /// A line the guest has started but not finished.
    partial: String,
}

impl Console {
    pub fn new(prefix: Option<String>) -> Self {
        Console {
            prefix,
            tail: VecDeque::with_capacity(TAIL_LINES),
            partial: String::new(),
        }
    }

    /// Writes guest bytes to stdout and remembers complete lines.
    pub fn write(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut out = std::io::stdout().lock();
        for piece in text.split_inclusive('\n') {
            if self.partial.is_empty() {
                if let Some(p) = &self.prefix {
                    let _ = write!(out, "{p}");
                }
            }
            let _ = write!(out, "{piece}");
            match piece.strip_suffix('\n') {
                Some(line) => {
                    self.partial.push_str(line);
                    self.remember();
                }
                None => self.partial.push_str(piece),
            }
        }
        let _ = out.flush();
    }

    fn remember(&mut self) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(std::mem::take(&mut self.partial));
    }

    /// The last lines, oldest first, including an unfinished one.
    pub fn tail(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(self.partial.clone());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_across_writes() {
        let mut c = Console::new(None);
        c.write(b"one\ntw");
        c.write(b"o\nthree");
        assert_eq!(c.tail(), ["one", "two", "three"]);
        for i in 0..20 {
            c.write(format!("l{i}\n").as_bytes());
        }
        let t = c.tail();
        assert_eq!(t.len(), TAIL_LINES);
        assert_eq!(t.last().unwrap(), "l19");
    }
}
