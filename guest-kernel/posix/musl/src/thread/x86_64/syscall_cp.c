/* flexos-vmm: replaces src/thread/x86_64/syscall_cp.s, the system call at a thread
 * cancellation point (pthread_cancel.c's __syscall_cp_c calls it once pthread_cancel is
 * linked in, for read, write, accept, poll, nanosleep, ...).
 *
 * musl's version checks the thread's cancel flag, then makes the system call between
 * the labels __cp_begin and __cp_end, so that the cancellation signal (SIGCANCEL)
 * handler can see a thread blocked there and redirect it to __cp_cancel. The guest
 * delivers no signals, so only the first half is kept: a cancellation requested before
 * the thread enters a cancellation point is acted on there (__cancel, as musl does);
 * a thread already blocked inside __flexos_syscall is not interrupted by
 * pthread_cancel. __cp_begin == __cp_end is an empty range, so the signal handler
 * (never run) could never redirect a thread. */
#include "pthread_impl.h"
#include "syscall.h"

hidden long __cancel(void);

/* The labels pthread_cancel.c's cancel_handler refers to; no code between begin and
 * end, and __cp_cancel tail-calls __cancel as in syscall_cp.s. */
__asm__(
	".text\n"
	".global __cp_begin\n.hidden __cp_begin\n"
	".global __cp_end\n.hidden __cp_end\n"
	".global __cp_cancel\n.hidden __cp_cancel\n"
	"__cp_begin:\n"
	"__cp_end:\n"
	"__cp_cancel:\n"
	"	jmp __cancel\n");

hidden long __syscall_cp_asm(volatile int *cancel, long nr, long u, long v, long w,
                             long x, long y, long z)
{
	if (*cancel)
		return __cancel();
	return __flexos_syscall(nr, u, v, w, x, y, z);
}
