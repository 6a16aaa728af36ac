//! The build script of every app (`build = "../../kernel/app-build.rs"` in its
//! Cargo.toml): links the image with the kernel's linker script, static at 1 MiB with
//! three PT_LOAD segments (text R+X, rodata R, data/bss R+W) that the monitor maps with
//! those rights.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/../../kernel/link.ld");
    println!("cargo:rustc-link-arg-bins=-T{script}");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed={dir}/../../kernel/app-build.rs");
}
