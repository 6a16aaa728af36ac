/* flexos-vmm: replaces musl's arch/x86_64/syscall_arch.h. Every system call is a plain
 * call of the guest's __flexos_syscall (src/internal/flexos_syscall.h) instead of a
 * `syscall` instruction, which the guest's ring 3 under kvm-pvm must never execute.
 * Unused arguments are passed as 0. The return convention is the kernel's (-errno),
 * so musl's __syscall_ret and every caller work unchanged.
 *
 * VDSO_USEFUL is deliberately not defined: there is no vDSO, clock_gettime and getcpu
 * go through __flexos_syscall too. */
#include "flexos_syscall.h"

#define __SYSCALL_LL_E(x) (x)
#define __SYSCALL_LL_O(x) (x)

static __inline long __syscall0(long n)
{
	return __flexos_syscall(n, 0, 0, 0, 0, 0, 0);
}

static __inline long __syscall1(long n, long a1)
{
	return __flexos_syscall(n, a1, 0, 0, 0, 0, 0);
}

static __inline long __syscall2(long n, long a1, long a2)
{
	return __flexos_syscall(n, a1, a2, 0, 0, 0, 0);
}

static __inline long __syscall3(long n, long a1, long a2, long a3)
{
	return __flexos_syscall(n, a1, a2, a3, 0, 0, 0);
}

static __inline long __syscall4(long n, long a1, long a2, long a3, long a4)
{
	return __flexos_syscall(n, a1, a2, a3, a4, 0, 0);
}

static __inline long __syscall5(long n, long a1, long a2, long a3, long a4, long a5)
{
	return __flexos_syscall(n, a1, a2, a3, a4, a5, 0);
}

static __inline long __syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
	return __flexos_syscall(n, a1, a2, a3, a4, a5, a6);
}

#define IPC_64 0
