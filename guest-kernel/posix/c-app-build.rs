//! The build script of every app that is a C program on the POSIX layer (`build =
//! "../../posix/c-app-build.rs"` in its Cargo.toml): links the image with the kernel's
//! linker script, as every app, then the program's objects and musl's libc.a, which
//! scripts/build-posix builds into target/posix/<package>/ before the guest workspace
//! and lists, in link order, in target/posix/<package>/link.txt. A missing archive fails
//! here, naming the step that makes it.

use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/../../kernel/link.ld");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed={dir}/../../posix/c-app-build.rs");
    let package = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");

    let root = Path::new(&dir).join("../../..");
    let inputs = root.join(format!("target/posix/{package}/link.txt"));
    println!("cargo:rerun-if-changed={}", inputs.display());
    let list = std::fs::read_to_string(&inputs).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build {package} and musl first (scripts/build does, through scripts/build-posix)",
            inputs.display()
        )
    });
    // Each line an archive or object, in link order; libc.a last.
    for line in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let path = if Path::new(line).is_absolute() {
            Path::new(line).to_path_buf()
        } else {
            root.join(line)
        };
        if !path.exists() {
            panic!(
                "{}: listed in {} but missing: run scripts/build",
                path.display(),
                inputs.display()
            );
        }
        println!("cargo:rerun-if-changed={}", path.display());
        if path.file_name().is_some_and(|n| n == "libc.a") {
            // Whole: compiler_builtins defines the C math functions (ceil, log, pow,
            // ...) weakly for this soft-float target, with their arguments in integer
            // registers. A weak definition already present stops the linker from taking
            // musl's from an archive, so C code calling ceil(x) with x in xmm0 would get
            // garbage. Linking all of musl makes its strong definitions win.
            println!("cargo:rustc-link-arg-bins=--whole-archive");
            println!("cargo:rustc-link-arg-bins={}", path.display());
            println!("cargo:rustc-link-arg-bins=--no-whole-archive");
        } else {
            println!("cargo:rustc-link-arg-bins={}", path.display());
        }
    }
}
