//! Starting a C program: the initial process stack musl expects (argc, argv, envp,
//! the auxiliary vector) and the call of musl's `__libc_start_main` with the
//! program's `main`.
//!
//! The vector is built on the heap (musl only reads it, and keeps pointers into it for
//! the whole run). The auxiliary vector tells musl what a kernel's would: the page
//! size, "not a set-uid program" (so it does not probe file descriptors 0-2), 16
//! random bytes for its stack protector and pointer guard, and one program header,
//! PT_TLS, built from the linker script's `__tls_*` symbols, from which musl lays out
//! the main thread's TLS.

use alloc::ffi::CString;
use alloc::vec::Vec;
use core::ffi::c_char;

use crate::linux::{
    AT_CLKTCK, AT_EGID, AT_EUID, AT_EXECFN, AT_GID, AT_HWCAP, AT_NULL, AT_PAGESZ, AT_PHDR,
    AT_PHENT, AT_PHNUM, AT_RANDOM, AT_SECURE, AT_UID, PAGE_SIZE, PT_TLS, Phdr,
};

/// A C program's `main`.
pub type CMain = unsafe extern "C" fn(i32, *mut *mut c_char, *mut *mut c_char) -> i32;

/// The TLS segment's alignment: the linker script aligns .tdata and .tbss to it.
const TLS_ALIGN: u64 = 64;

unsafe extern "C" {
    /// musl: initialises libc (TLS, stdio, constructors), calls `main`, then `exit`.
    fn __libc_start_main(
        main: CMain,
        argc: i32,
        argv: *mut *mut c_char,
        init: usize,
        fini: usize,
        ldso: usize,
    ) -> i32;
    static __tls_start: u8;
    static __tdata_end: u8;
    static __tls_end: u8;
}

/// The PT_TLS header musl reads through AT_PHDR (built once, then only read).
fn tls_header() -> Phdr {
    // Linker-script symbols: only their addresses are taken.
    let (start, data_end, end) = (
        &raw const __tls_start as u64,
        &raw const __tdata_end as u64,
        &raw const __tls_end as u64,
    );
    Phdr {
        p_type: PT_TLS,
        p_flags: 4,
        p_offset: 0,
        p_vaddr: start,
        p_paddr: start,
        p_filesz: data_end - start,
        p_memsz: end - start,
        p_align: TLS_ALIGN,
    }
}

/// Runs `main` with `args` (argv[0] first) through musl; returns only if musl does
/// (it calls `exit`, which ends the run).
pub fn run(main: CMain, args: &[&str], env: &[&str]) -> i32 {
    // Owned strings, leaked: argv and envp stay valid for the whole run.
    let strings: Vec<CString> = args
        .iter()
        .chain(env)
        .map(|s| CString::new(s.replace('\0', "")).expect("NULs were removed"))
        .collect();
    let strings = strings.leak();
    let phdr: &'static Phdr = alloc::boxed::Box::leak(alloc::boxed::Box::new(tls_header()));
    let random: &'static mut [u8; 16] = alloc::boxed::Box::leak(alloc::boxed::Box::new([0; 16]));
    crate::process::fill_random(random);

    let mut stack: Vec<usize> = Vec::new();
    stack.push(args.len());
    for s in strings[..args.len()].iter() {
        stack.push(s.as_ptr() as usize);
    }
    stack.push(0);
    for s in strings[args.len()..].iter() {
        stack.push(s.as_ptr() as usize);
    }
    stack.push(0);
    let execfn = strings.first().map_or(0, |s| s.as_ptr() as usize);
    for (key, value) in [
        (AT_PHDR, phdr as *const Phdr as usize),
        (AT_PHENT, core::mem::size_of::<Phdr>()),
        (AT_PHNUM, 1),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_CLKTCK, 100),
        (AT_HWCAP, 0),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_SECURE, 0),
        (AT_RANDOM, random.as_ptr() as usize),
        (AT_EXECFN, execfn),
        (AT_NULL, 0),
    ] {
        stack.push(key);
        stack.push(value);
    }
    let stack = stack.leak();
    let argv = stack[1..].as_mut_ptr() as *mut *mut c_char;
    // SAFETY: argv points at argc pointers to NUL-terminated strings, a NULL, the
    // environment and a NULL, then the auxiliary vector: the layout musl reads. All of
    // it is leaked, so it outlives the program.
    unsafe { __libc_start_main(main, args.len() as i32, argv, 0, 0, 0) }
}
