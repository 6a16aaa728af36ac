/* flexos-vmm: replaces src/thread/x86_64/clone.s (SYS_clone and, in the child, SYS_exit
 * by `syscall` instructions). Thread creation is the guest's __flexos_clone, a function
 * because the child cannot return from a system call it did not make. Callers pass 4
 * (posix_spawn, faccessat) or 7 (pthread_create, clone) arguments; like clone.s, the
 * last three are read whatever was passed and only used when flags ask for them. */
#include <stdarg.h>
#include "pthread_impl.h"
#include "syscall.h"

int __clone(int (*func)(void *), void *stack, int flags, void *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int *ptid = va_arg(ap, int *);
	void *tls = va_arg(ap, void *);
	int *ctid = va_arg(ap, int *);
	va_end(ap);
	return __flexos_clone(func, stack, flags, arg, ptid, tls, ctid);
}
