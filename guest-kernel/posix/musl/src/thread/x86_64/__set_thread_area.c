/* flexos-vmm: replaces src/thread/x86_64/__set_thread_area.s (arch_prctl by a
 * `syscall` instruction). Sets the thread pointer (FS base) of the calling thread. */
#include "pthread_impl.h"
#include "syscall.h"

#define ARCH_SET_FS 0x1002

int __set_thread_area(void *p)
{
	return __flexos_syscall(SYS_arch_prctl, ARCH_SET_FS, (long)p, 0, 0, 0, 0);
}
