/* flexos-vmm: replaces src/signal/x86_64/restore.s (rt_sigreturn by a `syscall`
 * instruction). __restore_rt is the sa_restorer sigaction registers with the kernel
 * (arch/x86_64/ksigaction.h makes __restore the same function): a signal handler
 * returns into it, with the stack pointer at the kernel's signal frame. The guest never
 * delivers a signal, so in the guest it never runs.
 *
 * It stays a correct restorer all the same, which is why it is assembly in a C file
 * rather than a C function: a C function would push a frame and move the stack pointer
 * before its call. Here __flexos_syscall(SYS_rt_sigreturn, ...) is called with the stack
 * pointer exactly at the frame, so inside __flexos_syscall the frame is at rsp + 8,
 * just above the return address (the host shim relies on it). The other arguments are
 * whatever the registers hold: rt_sigreturn has none. It does not return. */
#include "syscall.h"

__asm__(
	".text\n"
	".global __restore_rt\n"
	".hidden __restore_rt\n"
	".type __restore_rt,@function\n"
	"__restore_rt:\n"
	"	mov $" "15" ",%edi\n"   /* SYS_rt_sigreturn, checked below */
	"	call __flexos_syscall\n"
	"	ud2\n"
	".size __restore_rt,.-__restore_rt\n");

_Static_assert(SYS_rt_sigreturn == 15, "SYS_rt_sigreturn is 15 on x86_64");
