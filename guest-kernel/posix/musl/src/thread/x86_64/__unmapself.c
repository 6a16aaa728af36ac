/* flexos-vmm: replaces src/thread/x86_64/__unmapself.s (SYS_munmap then SYS_exit by
 * `syscall` instructions, on the stack being unmapped). A detached thread's exit: the
 * guest's __flexos_unmapself unmaps the thread's stack and ends the thread without
 * touching that stack again. */
#include "pthread_impl.h"
#include "syscall.h"

void __unmapself(void *base, size_t size)
{
	__flexos_unmapself(base, size);
}
