/* flexos-vmm: replaces src/signal/x86_64/restore.s (rt_sigreturn by a `syscall`
 * instruction). __restore_rt is the sa_restorer sigaction registers with the kernel
 * (arch/x86_64/ksigaction.h makes __restore the same function). The guest never
 * delivers a signal, so it never runs; it stays a correct restorer all the same. */
#include "syscall.h"

hidden void __restore_rt(void)
{
	__syscall(SYS_rt_sigreturn);
}
