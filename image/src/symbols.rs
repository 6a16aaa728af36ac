//! Turns guest code addresses into `function+offset (file:line)` using the image's
//! symbol table and DWARF line tables. Built only when a report needs it, so boot never
//! pays for parsing debug info. Everything comes from the image bytes the monitor read
//! at start: the file on disk may have been rebuilt or truncated since.

use std::fmt;

use addr2line::gimli;
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

type DwarfReader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// A function symbol: start address, size and demangled name.
struct Function {
    start: u64,
    size: u64,
    name: String,
}

/// Symbol and source lookups for one image, borrowing its bytes.
pub struct Symbolizer<'a> {
    functions: Vec<Function>,
    lines: Option<addr2line::Context<DwarfReader<'a>>>,
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

impl<'a> Symbolizer<'a> {
    /// Reads symbols and line tables from an image's bytes.
    pub fn new(bytes: &'a [u8]) -> Self {
        let mut functions = Vec::new();
        let mut lines = None;
        if let Ok(file) = object::File::parse(bytes) {
            lines = line_tables(&file);
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

/// The DWARF line tables of `file`, if it has any (a missing or compressed section
/// reads as empty).
fn line_tables<'a>(file: &object::File<'a>) -> Option<addr2line::Context<DwarfReader<'a>>> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<DwarfReader<'a>, gimli::Error> {
        let data = file
            .section_by_name(id.name())
            .filter(|s| {
                s.compressed_file_range()
                    .is_ok_and(|r| r.format == object::CompressionFormat::None)
            })
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
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
        let s = Symbolizer::new(b"not an elf");
        assert_eq!(s.place(0x1234, false).to_string(), "0x1234 (no symbol)");
    }

    #[test]
    fn symbolizes_the_test_binary_itself() {
        // Our own executable is an ELF with symbols: a function's address resolves to
        // its name with a zero offset.
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let s = Symbolizer::new(&bytes);
        assert!(!s.functions.is_empty());
        let f = &s.functions[s.functions.len() / 2];
        let p = s.place(f.start, false);
        assert_eq!(p.function.as_ref().unwrap().1, 0);
        // Line tables come from the same bytes (the release profile keeps them).
        let here = s
            .functions
            .iter()
            .find(|f| f.name.ends_with("symbolizes_the_test_binary_itself"))
            .expect("this test's own symbol");
        let loc = s.place(here.start, false).location.expect("a source line");
        assert!(loc.0.ends_with("symbols.rs"), "{loc:?}");
    }
}
