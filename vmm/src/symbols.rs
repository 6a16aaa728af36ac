//! Turns guest code addresses into `function+offset (file:line)` using the image's
//! symbol table and DWARF line tables. Built only when a report needs it, so boot never
//! pays for parsing debug info.

use std::fmt;
use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};

/// A function symbol: start address, size and demangled name.
struct Function {
    start: u64,
    size: u64,
    name: String,
}

/// Symbol and source lookups for one image.
pub struct Symbolizer {
    functions: Vec<Function>,
    lines: Option<addr2line::Loader>,
}

/// Where an address lies in the image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub addr: u64,
    pub function: Option<(String, u64)>,
    pub location: Option<(String, u32)>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some((name, off)) => write!(f, "{name}+{off:#x}")?,
            None => write!(f, "{:#x} (no symbol)", self.addr)?,
        }
        if let Some((file, line)) = &self.location {
            write!(f, " ({file}:{line})")?;
        }
        Ok(())
    }
}

impl Symbolizer {
    /// Reads symbols from `bytes` and line tables from the file at `path`.
    pub fn new(path: &Path, bytes: &[u8]) -> Self {
        let mut functions = Vec::new();
        if let Ok(file) = object::File::parse(bytes) {
            for sym in file.symbols() {
                if sym.kind() != SymbolKind::Text || sym.address() == 0 {
                    continue;
                }
                if let Ok(raw) = sym.name() {
                    functions.push(Function {
                        start: sym.address(),
                        size: sym.size(),
                        name: format!("{:#}", rustc_demangle::demangle(raw)),
                    });
                }
            }
        }
        functions.sort_by_key(|f| f.start);
        let lines = addr2line::Loader::new(path).ok();
        Symbolizer { functions, lines }
    }

    fn function(&self, addr: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.start <= addr);
        let f = self.functions.get(i.checked_sub(1)?)?;
        // Symbols without a size (hand-written asm) cover up to the next symbol.
        (f.size == 0 || addr < f.start + f.size).then_some(f)
    }

    /// Describes `addr`. For return addresses pass `is_return = true`: the call that
    /// returns there is the instruction before it, which is what the line table needs.
    pub fn place(&self, addr: u64, is_return: bool) -> Place {
        let probe = if is_return {
            addr.saturating_sub(1)
        } else {
            addr
        };
        let function = self
            .function(probe)
            .map(|f| (f.name.clone(), addr - f.start));
        let location = self
            .lines
            .as_ref()
            .and_then(|l| l.find_location(probe).ok().flatten())
            .and_then(|loc| Some((shorten(loc.file?), loc.line?)));
        Place {
            addr,
            function,
            location,
        }
    }
}

/// Keeps paths readable: drops everything up to the project or cargo registry folder.
fn shorten(file: &str) -> String {
    for marker in ["/guest-kernel/", "/library/", "/registry/src/"] {
        if let Some(i) = file.find(marker) {
            return file[i + 1..].to_string();
        }
    }
    file.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shortened() {
        assert_eq!(
            shorten("/work/main/guest-kernel/apps/hello/src/main.rs"),
            "guest-kernel/apps/hello/src/main.rs"
        );
        assert_eq!(shorten("src/x.rs"), "src/x.rs");
    }

    #[test]
    fn unknown_addresses_render_as_question_marks() {
        let s = Symbolizer::new(Path::new("/nonexistent"), b"not an elf");
        assert_eq!(s.place(0x1234, false).to_string(), "0x1234 (no symbol)");
    }

    #[test]
    fn symbolizes_the_test_binary_itself() {
        // Our own executable is an ELF with symbols: a function's address resolves to
        // its name with a zero offset.
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let s = Symbolizer::new(&exe, &bytes);
        assert!(!s.functions.is_empty());
        let f = &s.functions[s.functions.len() / 2];
        let p = s.place(f.start, false);
        assert_eq!(p.function.as_ref().unwrap().1, 0);
    }
}
