/* Test guest for the kvm-pvm wake experiment. Linked at 0x100000, entered in ring 3
 * (CS=0x23, IOPL=3, IF=1). Memory map (identity, 2 MiB pages, user-accessible):
 *   0x7000 GDT, 0x8000 IDT, 0x9000 TSS, 0xA000 VIF page, 0xB000 PV-EOI word,
 *   0xC000 DATA (mode, counters), 0x20000 ring-0 stack top, 0x30000 IST top, 0x40000 user stack top
 */
#define VIF      0xA000
#define PVEOI    0xB000
#define DATA     0xC000
#define D_MODE   (DATA+0)
#define D_KICKS  (DATA+8)     /* incremented by the vector-0x40 handler */
#define D_USED   (DATA+16)    /* kicks consumed by the wait loop */
#define D_ITERS  (DATA+24)
#define D_WAITS  (DATA+32)    /* halts executed */
#define D_EOIMODE (DATA+40)   /* 0: x2APIC wrmsr EOI, 1: PV EOI (btr) then wrmsr if needed, 2: no EOI (test) */
#define D_PVEOI_HITS (DATA+48)
#define D_PEND   (DATA+56)    /* mode 4: set by lean_irq, consumed in ring 3 */
#define D_FAULT  (DATA+0x100)
#define PORT_DONE  0xe0       /* ioeventfd: the peer's done eventfd */
#define PORT_WAIT  0xe1       /* exit to userspace: today's design */
#define PORT_FAULT 0xe2       /* exit to userspace: report a fault */

	.code64
	.text
	.globl _start
_start:                          /* ring 3 */
	mov	D_MODE, %eax
	cmp	$0, %eax
	je	mode0
	cmp	$3, %eax
	je	mode3
	cmp	$4, %eax
	je	mode4
	cmp	$5, %eax
	je	mode5
	cmp	$6, %eax
	je	mode4
	cmp	$7, %eax
	je	mode7
	cmp	$8, %eax
	je	mode8
	cmp	$9, %eax
	je	mode9                /* mode 6: same ring-3 loop as mode 4, bare iretq handler */
	/* modes 1 and 2: wait in ring 0 via int $0x81 */
mode12:
	int3                     /* #BP gate (DPL 3) -> wait_gate in ring 0; int $0x80/$0x81 and syscall do not reach ring 0 here */
	incq	D_ITERS
	out	%al, $PORT_DONE
	jmp	mode12

mode0:	/* today's design: exit to the VMM, which blocks on the kick eventfd */
	out	%al, $PORT_WAIT
	incq	D_ITERS
	out	%al, $PORT_DONE
	jmp	mode0

mode3:	/* ring-3 busy wait on the kick counter (interrupt delivered in ring 3) */
1:	mov	D_KICKS, %rax
	cmp	D_USED, %rax
	je	1b
	incq	D_USED
	incq	D_ITERS
	out	%al, $PORT_DONE
	jmp	1b

mode4:	/* lean: consume the pending flag natively in ring 3; sleep via #BP -> lean_wait */
	xor	%eax, %eax
	xchg	%rax, D_PEND
	test	%rax, %rax
	jnz	1f
	int3
	jmp	mode4
1:	incq	D_ITERS
	out	%al, $PORT_DONE
	jmp	mode4

mode5:	/* does a ring-3 hlt sleep? (expect #GP) */
	hlt
	incq	D_ITERS
	out	%al, $PORT_DONE
	jmp	mode5

mode7:	/* microbenchmark: 20000 x `out` to the ioeventfd port, then report */
	mov	$20000, %ecx
1:	out	%al, $PORT_DONE
	dec	%ecx
	jnz	1b
	out	%al, $PORT_WAIT
	jmp	mode7
mode9:	/* microbenchmark: `out` to an unbound port: exit to userspace and back */
	out	%al, $PORT_WAIT
	jmp	mode9
mode8:	/* microbenchmark: 20000 x (int3 -> ring-0 gate that is a bare iretq) */
	mov	$20000, %ecx
1:	int3
	dec	%ecx
	jnz	1b
	out	%al, $PORT_WAIT
	jmp	mode8

/* ---- ring 0 ---- */
	.globl lean_wait
	.p2align 4
lean_wait:                       /* #BP gate, IF=0: sleep unless a kick is already pending */
	cmpq	$0, D_PEND
	jne	1f
	sti
	hlt
1:	iretq

	.globl bare_irq
	.p2align 4
bare_irq:                        /* vector 0x40 in mode 6: the peer set D_PEND before kicking;
	                            kvm-pvm EOIs at delivery, so there is nothing to do */
	iretq

	.globl lean_irq
	.p2align 4
lean_irq:                        /* vector 0x40 in mode 4: flag + PV EOI */
	movq	$1, D_PEND
	lock btrq $0, PVEOI
	jc	1f
	push	%rax
	push	%rcx
	push	%rdx
	mov	$0x80b, %ecx
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	pop	%rdx
	pop	%rcx
	pop	%rax
1:	iretq

	.globl wait_gate
	.p2align 4
wait_gate:                       /* int $0x81 from ring 3, interrupt gate (IF=0 here) */
	push	%rax
	cmpl	$2, D_MODE
	je	wait_vif
wait_emul:                       /* mode 1: no VIF, plain cli/sti/hlt (emulated) */
	mov	D_KICKS, %rax
	cmp	D_USED, %rax
	jne	got
	incq	D_WAITS
	sti
	hlt
	cli
	jmp	wait_emul
wait_vif:                        /* mode 2: PV virtual IF in the VIF page */
	movb	$0, VIF
	mov	D_KICKS, %rax
	cmp	D_USED, %rax
	jne	got
	incq	D_WAITS
	movb	$1, VIF              /* "sti" */
	cmpb	$0, VIF+1            /* pending? ring the doorbell */
	je	2f
	out	%al, $0x80
2:	hlt
	jmp	wait_vif
got:
	incq	D_USED
	pop	%rax
	iretq

	.globl wait_sys
	.p2align 4
wait_sys:                        /* syscall from ring 3: rcx = return rip, r11 = rflags */
	cmpl	$2, D_MODE
	je	sys_vif
sys_emul:                        /* mode 1: no VIF, plain sti/hlt/cli (emulated) */
	mov	D_KICKS, %rax
	cmp	D_USED, %rax
	jne	sys_got
	incq	D_WAITS
	sti
	hlt
	cli
	jmp	sys_emul
sys_vif:                         /* mode 2: PV virtual IF in the VIF page */
	movb	$0, VIF
	mov	D_KICKS, %rax
	cmp	D_USED, %rax
	jne	sys_got
	incq	D_WAITS
	movb	$1, VIF              /* "sti" */
	cmpb	$0, VIF+1            /* pending? ring the doorbell */
	je	2f
	out	%al, $0x80
2:	hlt
	jmp	sys_vif
sys_got:
	incq	D_USED
	sysretq

	.globl irq_0x40
	.p2align 4
irq_0x40:
	push	%rax
	push	%rcx
	push	%rdx
	lock incq D_KICKS
	mov	D_EOIMODE, %eax
	cmp	$2, %eax
	je	9f
	cmp	$1, %eax
	jne	8f
	lock btrq $0, PVEOI        /* KVM PV EOI: bit set by KVM means "EOI for me" */
	jnc	8f
	incq	D_PVEOI_HITS
	jmp	9f
8:	mov	$0x80b, %ecx           /* x2APIC EOI */
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
9:	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq

/* exception trampolines: vector number pushed, report through PORT_FAULT */
	.macro EXC vec, err
	.globl exc_\vec
	.p2align 4
exc_\vec:
	.if \err == 0
	push	$0
	.endif
	push	$\vec
	jmp	fault
	.endm
	EXC 0,0; EXC 1,0; EXC 2,0; EXC 3,0; EXC 4,0; EXC 5,0; EXC 6,0; EXC 7,0
	EXC 8,1; EXC 9,0; EXC 10,1; EXC 11,1; EXC 12,1; EXC 13,1; EXC 14,1; EXC 15,0
	EXC 16,0; EXC 17,1; EXC 18,0; EXC 19,0; EXC 20,0; EXC 21,1
	EXC 255,0
fault:
	mov	%rax, D_FAULT+0x80
	mov	(%rsp), %rax;  mov %rax, D_FAULT+0     /* vector */
	mov	8(%rsp), %rax; mov %rax, D_FAULT+8     /* error code */
	mov	16(%rsp), %rax; mov %rax, D_FAULT+16   /* rip */
	mov	24(%rsp), %rax; mov %rax, D_FAULT+24   /* cs */
	mov	32(%rsp), %rax; mov %rax, D_FAULT+32   /* rflags */
	mov	40(%rsp), %rax; mov %rax, D_FAULT+40   /* rsp */
	mov	%cr2, %rax;     mov %rax, D_FAULT+48
	out	%al, $PORT_FAULT
1:	hlt
	jmp	1b
