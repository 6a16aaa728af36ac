/* The contract between musl, as built for flexos-vmm's guest, and the guest's POSIX
 * layer, which defines these three functions. musl's Linux syscall layer is replaced
 * by calls of them (guest-kernel/posix/musl/README.md): no `syscall` instruction is
 * left in libc.a. The host smoke test's shim (host-shim/) implements them with real
 * Linux syscalls; it is never linked into a guest. */
#ifndef FLEXOS_SYSCALL_H
#define FLEXOS_SYSCALL_H

#include <stddef.h>

/* Linux system call n with its six arguments (unused ones 0), as the kernel defines
 * them (x86_64 numbers, <bits/syscall.h>); returns what the kernel returns: the result,
 * or -errno in -4095..-1. */
long __flexos_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6);

/* A new thread (musl's __clone; pthread_create passes CLONE_VM | CLONE_FS |
 * CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS |
 * CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_DETACHED): the child runs
 * func(arg) on `stack` (its top; the callee aligns it) with its thread pointer (FS base)
 * set to `tls` when CLONE_SETTLS is given, stores its thread id at *ptid
 * (CLONE_PARENT_SETTID) and clears *ctid and wakes a futex waiter on it when it exits
 * (CLONE_CHILD_CLEARTID); when func returns, the thread exits with its return value
 * (as SYS_exit). Returns the child's thread id to the caller, or -errno. A function,
 * not a syscall, because the child cannot return from this call. */
int __flexos_clone(int (*func)(void *), void *stack, int flags, void *arg,
                   int *ptid, void *tls, int *ctid);

/* The end of a detached thread: unmap [base, base + size), which holds the calling
 * thread's own stack, then exit the thread (SYS_exit, status 0). Never returns; must
 * not touch the old stack after the unmap. */
_Noreturn void __flexos_unmapself(void *base, size_t size);

#endif
