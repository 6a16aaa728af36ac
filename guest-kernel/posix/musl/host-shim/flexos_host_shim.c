/* HOST ONLY: never linked into a guest. The three functions of musl's flexos contract
 * (../src/internal/flexos_syscall.h) over real Linux system calls, so that a program
 * built against target/posix/musl (libc.a with the syscall layer replaced) runs on the
 * host: scripts/test-posix links its smoke programs and redis-server with this file to
 * prove the musl build and the header replacement right without the guest.
 * These are the only `syscall` instructions in such a program. */
#include "flexos_syscall.h"

/* The arguments move from the C calling convention to the kernel's (a6 comes from the
 * stack). Assembly, so that the stack pointer at the `syscall` is the caller's: for
 * rt_sigreturn, which musl's __restore_rt (src/signal/x86_64/restore.c) calls with the
 * stack pointer at the signal frame, it drops the return address first, as the kernel
 * finds the frame from the stack pointer. */
__asm__(
	".text\n"
	".global __flexos_syscall\n"
	".type __flexos_syscall,@function\n"
	"__flexos_syscall:\n"
	"	mov %rdi,%rax\n"
	"	mov %rsi,%rdi\n"
	"	mov %rdx,%rsi\n"
	"	mov %rcx,%rdx\n"
	"	mov %r8,%r10\n"
	"	mov %r9,%r8\n"
	"	mov 8(%rsp),%r9\n"
	"	cmp $15,%eax\n"          /* SYS_rt_sigreturn */
	"	jne 1f\n"
	"	add $8,%rsp\n"
	"1:	syscall\n"
	"	ret\n"
	".size __flexos_syscall,.-__flexos_syscall\n");

/* musl 1.2.3's src/thread/x86_64/clone.s, renamed: clone(flags, stack, ptid, ctid, tls)
 * with func and arg on the child's stack; the child calls func(arg) and exits with its
 * return value. */
__asm__(
	".text\n"
	".global __flexos_clone\n"
	".type __flexos_clone,@function\n"
	"__flexos_clone:\n"
	"	xor %eax,%eax\n"
	"	mov $56,%al\n"          /* SYS_clone */
	"	mov %rdi,%r11\n"        /* func */
	"	mov %rdx,%rdi\n"        /* flags */
	"	mov %r8,%rdx\n"         /* ptid */
	"	mov %r9,%r8\n"          /* tls */
	"	mov 8(%rsp),%r10\n"     /* ctid */
	"	mov %r11,%r9\n"         /* func, kept across the syscall */
	"	and $-16,%rsi\n"
	"	sub $8,%rsi\n"
	"	mov %rcx,(%rsi)\n"      /* arg, popped by the child */
	"	syscall\n"
	"	test %eax,%eax\n"
	"	jnz 1f\n"
	"	xor %ebp,%ebp\n"
	"	pop %rdi\n"
	"	call *%r9\n"
	"	mov %eax,%edi\n"
	"	xor %eax,%eax\n"
	"	mov $60,%al\n"          /* SYS_exit */
	"	syscall\n"
	"	hlt\n"
	"1:	ret\n"
	".size __flexos_clone,.-__flexos_clone\n");

/* musl 1.2.3's src/thread/x86_64/__unmapself.s, renamed. */
__asm__(
	".text\n"
	".global __flexos_unmapself\n"
	".type __flexos_unmapself,@function\n"
	"__flexos_unmapself:\n"
	"	movl $11,%eax\n"        /* SYS_munmap(base, size) */
	"	syscall\n"
	"	xor %rdi,%rdi\n"
	"	movl $60,%eax\n"        /* SYS_exit(0) */
	"	syscall\n"
	".size __flexos_unmapself,.-__flexos_unmapself\n");
