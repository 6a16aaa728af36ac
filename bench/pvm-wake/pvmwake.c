/* pvmwake: can a guest on kvm-pvm sleep in the kernel and be woken by an irqfd, and what
 * does a hand-off round trip cost compared with today's exit-to-userspace wait?
 *
 * One VM, one vCPU thread, one peer thread. The peer writes the "kick" eventfd and blocks
 * reading the "done" eventfd; the guest answers with `out` to a port bound as ioeventfd
 * to "done".
 *   mode 0: today's design: guest `out` to PORT_WAIT exits to userspace; the vCPU thread
 *           blocks reading "kick", then re-enters.
 *   mode 1: "kick" is an irqfd (MSI, vector 0x40, in-kernel LAPIC); the guest enters a
 *           ring-0 trampoline (int $0x81) that does cli/sti/hlt (no PV help).
 *   mode 2: as 1, but the VMM registers kvm-pvm's VIF page (MSR 0x4b564d10) so the
 *           trampoline uses the virtual IF byte instead of cli/sti (and ring 0 may run
 *           natively).
 *   mode 4: lean version of mode 1: ring 3 consumes a flag natively and enters ring 0
 *           with int3 only to sleep (cmp; jne; sti; hlt; iretq); the vector-0x40 handler
 *           sets the flag and does a KVM PV EOI (mov; lock btr; jc; iretq).
 *   mode 6: as 4, but the peer sets the flag in guest memory before kicking (as an RPC
 *           peer writes its message first), so the vector-0x40 handler is a bare iretq.
 *   mode 7: microbenchmark: cost of one ring-3 `out` to an ioeventfd port.
 *   mode 8: microbenchmark: cost of one int3 -> ring-0 gate (bare iretq) -> ring 3.
 *   mode 9: microbenchmark: cost of one `out` that exits to userspace (immediately re-entered).
 *   mode 5: ring-3 hlt (does kvm-pvm let ring 3 sleep? expect #GP).
 *   mode 3: irqfd; the guest busy-waits in ring 3 on the counter its vector-0x40 handler
 *           bumps (checks ring-3 delivery; burns the vCPU's core).
 * usage: pvmwake -m MODE [-n N] [-w WARM] [-a same|cross] [-p HALT_POLL_NS] [-e EOIMODE] [-g GAP_US]
 *                [-f VIF_FLAGS] [-t TIMEOUT_MS] [-v]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE  (2UL << 20)
#define PML4      0x1000
#define PDPT      0x2000
#define PD        0x3000
#define GDT       0x7000
#define IDT       0x8000
#define TSS       0x9000
#define VIF       0xA000
#define PVEOI     0xB000
#define DATA      0xC000
#define KSTACK    0x20000
#define ISTSTACK  0x30000
#define USTACK    0x40000
#define CODE      0x100000
#define PORT_DONE  0xe0
#define PORT_WAIT  0xe1
#define PORT_FAULT 0xe2
#define VEC_KICK  0x40

#define MSR_IA32_APICBASE 0x1b
#define MSR_KVM_PV_EOI_EN 0x4b564d04
#define MSR_PVM_VIF       0x4b564d10
#define MSR_PVM_SIG       0x4b564d11
#define MSR_PVM_FEAT      0x4b564d12
#define MSR_STAR   0xc0000081
#define MSR_LSTAR  0xc0000082
#define MSR_SFMASK 0xc0000084

static int kvm, vm, vcpu, kick_fd, done_fd, stats_fd;
static struct kvm_run *run;
static uint8_t *mem;
static int opt_mode = 0, opt_n = 2000, opt_warm = 200, opt_cross = 0, opt_eoi = 0, opt_verbose = 0;
static long opt_poll = -1, opt_timeout = 3000, opt_gap = 1000;
static uint64_t opt_vif_flags = 0;
static volatile int vcpu_stop, vcpu_failed;
static pthread_t vcpu_thr;

#define die(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " (%s)\n", strerror(errno)); exit(1); } while (0)
#define D64(off) (*(volatile uint64_t *)(mem + DATA + (off)))

static uint64_t sym(const char *name)
{
	char cmd[256], line[256];
	snprintf(cmd, sizeof cmd, "nm %s/guest.elf", getenv("PVMWAKE_DIR") ? getenv("PVMWAKE_DIR") : ".");
	FILE *f = popen(cmd, "r");
	if (!f) die("nm");
	uint64_t v = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long a; char t; char n[128];
		if (sscanf(line, "%llx %c %127s", &a, &t, n) == 3 && !strcmp(n, name)) v = a;
	}
	pclose(f);
	if (!v) { fprintf(stderr, "symbol %s missing\n", name); exit(1); }
	return v;
}

static void set_gate(int vec, uint64_t off, int dpl, int ist)
{
	uint64_t *g = (uint64_t *)(mem + IDT + vec * 16);
	g[0] = (off & 0xffff) | (0x08UL << 16) | ((uint64_t)ist << 32) | (0x8eUL << 40) |
	       ((uint64_t)dpl << 45) | (((off >> 16) & 0xffff) << 48);
	g[1] = off >> 32;
}

static struct kvm_segment seg(uint16_t sel, int code, int dpl)
{
	struct kvm_segment s = { .base = 0, .limit = 0xffffffff, .selector = sel, .present = 1,
		.dpl = dpl, .s = 1, .g = 1 };
	s.type = code ? 0xb : 0x3;
	if (code) s.l = 1; else s.db = 1;
	return s;
}

static void set_msr(uint32_t idx, uint64_t val)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e[1]; } m = { 0 };
	m.h.nmsrs = 1; m.e[0].index = idx; m.e[0].data = val;
	int r = ioctl(vcpu, KVM_SET_MSRS, &m);
	if (r != 1) die("KVM_SET_MSRS %#x=%#llx -> %d", idx, (unsigned long long)val, r);
}

static int get_msr(uint32_t idx, uint64_t *val)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e[1]; } m = { 0 };
	m.h.nmsrs = 1; m.e[0].index = idx;
	int r = ioctl(vcpu, KVM_GET_MSRS, &m);
	*val = m.e[0].data;
	return r;
}

/* ---- KVM binary stats ---- */
static struct kvm_stats_header sh;
static char *sdesc;
static size_t dsz;
static const char *want_stats[] = { "exits", "io_exits", "insn_emulation", "halt_exits", "halt_wakeup",
	"halt_attempted_poll", "halt_successful_poll", "halt_poll_invalid", "irq_injections",
	"req_event", "irq_window_exits", "hypercalls", "host_state_reload", "signal_exits",
	"request_irq_exits", "irq_exits", "halt_wait_ns", "halt_poll_success_ns", "halt_poll_fail_ns", NULL };
#define NSTAT 32
static void stats_init(void)
{
	stats_fd = ioctl(vcpu, KVM_GET_STATS_FD, NULL);
	if (stats_fd < 0) die("KVM_GET_STATS_FD");
	if (pread(stats_fd, &sh, sizeof sh, 0) != sizeof sh) die("stats header");
	dsz = sizeof(struct kvm_stats_desc) + sh.name_size;
	sdesc = malloc(dsz * sh.num_desc);
	if (pread(stats_fd, sdesc, dsz * sh.num_desc, sh.desc_offset) != (ssize_t)(dsz * sh.num_desc)) die("stats desc");
}
static void stats_read(uint64_t *out)
{
	for (int i = 0; want_stats[i]; i++) {
		out[i] = 0;
		for (unsigned j = 0; j < sh.num_desc; j++) {
			struct kvm_stats_desc *d = (void *)(sdesc + j * dsz);
			if (!strcmp(d->name, want_stats[i])) {
				if (pread(stats_fd, &out[i], 8, sh.data_offset + d->offset) != 8) die("stats read");
				break;
			}
		}
	}
}

static void pin(int cpu)
{
	cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof s, &s)) die("sched_setaffinity");
}

static void dump_fault(void)
{
	fprintf(stderr, "guest fault: vec=%llu err=%#llx rip=%#llx cs=%#llx rflags=%#llx rsp=%#llx cr2=%#llx\n",
		(unsigned long long)D64(0x100), (unsigned long long)D64(0x108), (unsigned long long)D64(0x110),
		(unsigned long long)D64(0x118), (unsigned long long)D64(0x120), (unsigned long long)D64(0x128),
		(unsigned long long)D64(0x130));
}

static void sigusr(int s) { (void)s; }

static void *vcpu_main(void *arg)
{
	(void)arg;
	pin(0);
	for (;;) {
		if (vcpu_stop) return NULL;
		int r = ioctl(vcpu, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR) { if (vcpu_stop) return NULL; continue; }
			perror("KVM_RUN"); vcpu_failed = 1; return NULL;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.port == PORT_WAIT) {
				uint64_t v;
				if (read(kick_fd, &v, 8) != 8) { if (vcpu_stop) return NULL; perror("read kick"); }
				if (getenv("PVMWAKE_MARK")) { int fd = open("/sys/kernel/tracing/trace_marker", O_WRONLY); if (write(fd, "vcpu-reenter\n", 13) < 0) {} close(fd); }
				continue;
			}
			if (run->io.port == PORT_FAULT) { dump_fault(); vcpu_failed = 1; return NULL; }
			fprintf(stderr, "unexpected IO exit port %#x dir %d\n", run->io.port, run->io.direction);
			vcpu_failed = 1; return NULL;
		case KVM_EXIT_INTR:
			continue;
		default: {
			struct kvm_regs rg; ioctl(vcpu, KVM_GET_REGS, &rg);
			fprintf(stderr, "unexpected exit %u (rip %#llx)\n", run->exit_reason, rg.rip);
			if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
				fprintf(stderr, "internal error suberror %u\n", run->internal.suberror);
			if (run->exit_reason == KVM_EXIT_SHUTDOWN) dump_fault();
			vcpu_failed = 1; return NULL;
		}
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t now_ns(void)
{
	struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ULL + t.tv_nsec;
}

static void setup(void)
{
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("/dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("KVM_CREATE_VM");
	if (opt_mode != 0)
		if (ioctl(vm, KVM_CREATE_IRQCHIP, 0)) die("KVM_CREATE_IRQCHIP");
	if (opt_poll >= 0) {
		struct kvm_enable_cap c = { .cap = KVM_CAP_HALT_POLL, .args = { (uint64_t)opt_poll } };
		if (ioctl(vm, KVM_ENABLE_CAP, &c)) die("KVM_CAP_HALT_POLL");
	}
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) die("mmap");
	madvise(mem, MEM_SIZE, MADV_HUGEPAGE);
	memset(mem, 0, MEM_SIZE);
	struct kvm_userspace_memory_region reg = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
		.userspace_addr = (uint64_t)mem };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &reg)) die("KVM_SET_USER_MEMORY_REGION");

	/* guest image */
	char path[512];
	snprintf(path, sizeof path, "%s/guest.bin", getenv("PVMWAKE_DIR") ? getenv("PVMWAKE_DIR") : ".");
	FILE *f = fopen(path, "rb");
	if (!f) die("guest.bin");
	size_t n = fread(mem + CODE, 1, MEM_SIZE - CODE, f);
	fclose(f);
	if (!n) die("empty guest");

	/* page tables: 1 GiB identity with 2 MiB pages, user-accessible */
	uint64_t *pml4 = (void *)(mem + PML4), *pdpt = (void *)(mem + PDPT), *pd = (void *)(mem + PD);
	pml4[0] = PDPT | 7;
	pdpt[0] = PD | 7;
	for (int i = 0; i < 512; i++) pd[i] = ((uint64_t)i << 21) | 0x87;
	/* GDT: null, kernel CS 0x08, kernel DS 0x10, user DS 0x1b, user CS 0x23, TSS 0x28 */
	uint64_t *gdt = (void *)(mem + GDT);
	gdt[1] = 0x00af9b000000ffffULL;
	gdt[2] = 0x00cf93000000ffffULL;
	gdt[3] = 0x00cff3000000ffffULL;
	gdt[4] = 0x00affb000000ffffULL;
	uint64_t tl = 0x68 + 32; /* TSS + I/O bitmap for ports 0..255 + the 0xff terminator */
	gdt[5] = (tl & 0xffff) | ((uint64_t)(TSS & 0xffffff) << 16) | (0x89ULL << 40) | (((uint64_t)TSS >> 24 & 0xff) << 56);
	gdt[6] = 0;
	/* TSS: rsp0, IST1 */
	*(uint64_t *)(mem + TSS + 4) = KSTACK;
	*(uint64_t *)(mem + TSS + 0x24) = ISTSTACK;
	*(uint16_t *)(mem + TSS + 0x66) = 0x68; /* I/O bitmap: ring 3 may use PORT_DONE/WAIT/FAULT only */
	memset(mem + TSS + 0x68, 0xff, 33);
	for (int p = PORT_DONE; p <= PORT_FAULT; p++) mem[TSS + 0x68 + p / 8] &= ~(1 << (p % 8));
	/* IDT */
	char nm[32];
	for (int v = 0; v <= 21; v++) {
		snprintf(nm, sizeof nm, "exc_%d", v);
		set_gate(v, sym(nm), v == 3 ? 3 : 0, (v == 2 || v == 8 || v == 18) ? 1 : 0);
	}
	for (int v = 22; v < 256; v++) set_gate(v, sym("exc_255"), 0, 0);
	set_gate(VEC_KICK, sym("irq_0x40"), 0, 0);
	set_gate(3, sym(opt_mode >= 4 ? "lean_wait" : "wait_gate"), 3, 0);
	if (opt_mode == 4) set_gate(VEC_KICK, sym("lean_irq"), 0, 0);
	if (opt_mode == 6) set_gate(VEC_KICK, sym("bare_irq"), 0, 0);
	if (opt_mode == 8) set_gate(3, sym("bare_irq"), 3, 0);
	D64(0) = opt_mode;
	D64(40) = opt_eoi;

	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) die("KVM_CREATE_VCPU");
	int msz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, msz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) die("mmap run");

	/* CPUID: what KVM supports, plus x2APIC */
	struct kvm_cpuid2 *cp = calloc(1, sizeof *cp + 256 * sizeof(struct kvm_cpuid_entry2));
	cp->nent = 256;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cp)) die("KVM_GET_SUPPORTED_CPUID");
	for (unsigned i = 0; i < cp->nent; i++)
		if (cp->entries[i].function == 1) cp->entries[i].ecx |= 1u << 21;
	if (ioctl(vcpu, KVM_SET_CPUID2, cp)) die("KVM_SET_CPUID2");

	struct kvm_sregs sr;
	if (ioctl(vcpu, KVM_GET_SREGS, &sr)) die("KVM_GET_SREGS");
	sr.cr0 = 0x80050033; /* PG WP NE ET MP PE */
	sr.cr3 = PML4;
	sr.cr4 = 0x620;      /* PAE OSFXSR OSXMMEXCPT */
	sr.efer = 0xd01;     /* SCE LME LMA NXE */
	sr.cs = seg(0x23, 1, 3);
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = seg(0x1b, 0, 3);
	sr.tr = (struct kvm_segment){ .base = TSS, .limit = 0x68 + 32, .selector = 0x28, .type = 0xb, .present = 1 };
	sr.ldt = (struct kvm_segment){ .type = 2, .present = 1, .unusable = 1 };
	sr.gdt.base = GDT; sr.gdt.limit = 7 * 8 - 1;
	sr.idt.base = IDT; sr.idt.limit = 256 * 16 - 1;
	if (ioctl(vcpu, KVM_SET_SREGS, &sr)) die("KVM_SET_SREGS");
	struct kvm_regs rg = { .rip = sym("_start"), .rsp = USTACK - 8, .rflags = 0x3202 };
	if (ioctl(vcpu, KVM_SET_REGS, &rg)) die("KVM_SET_REGS");
	set_msr(MSR_STAR, 0x08ULL << 32);
	set_msr(MSR_SFMASK, 0x47700);
	set_msr(MSR_LSTAR, sym("wait_sys"));

	if (opt_mode != 0) {
		/* in-kernel LAPIC: x2APIC mode, software-enabled, TPR 0 */
		set_msr(MSR_IA32_APICBASE, 0xfee00000ULL | (1 << 11) | (1 << 10) | (1 << 8));
		struct kvm_lapic_state la;
		if (ioctl(vcpu, KVM_GET_LAPIC, &la)) die("KVM_GET_LAPIC");
		if (!getenv("PVMWAKE_NO_SVR")) *(uint32_t *)(la.regs + 0xf0) = 0x1ff; /* software-enable the LAPIC */
		*(uint32_t *)(la.regs + 0x80) = 0;
		if (ioctl(vcpu, KVM_SET_LAPIC, &la)) die("KVM_SET_LAPIC");
		if (opt_eoi == 1) set_msr(MSR_KVM_PV_EOI_EN, PVEOI | 1);
		/* MSI route: GSI 1 -> vector 0x40 on APIC 0, fixed, edge */
		struct { struct kvm_irq_routing h; struct kvm_irq_routing_entry e[1]; } rt = { 0 };
		rt.h.nr = 1;
		rt.e[0].gsi = 1; rt.e[0].type = KVM_IRQ_ROUTING_MSI;
		rt.e[0].u.msi.address_lo = 0xfee00000; rt.e[0].u.msi.data = VEC_KICK;
		if (ioctl(vm, KVM_SET_GSI_ROUTING, &rt)) die("KVM_SET_GSI_ROUTING");
		struct kvm_irqfd irqfd = { .fd = kick_fd, .gsi = 1 };
		if (ioctl(vm, KVM_IRQFD, &irqfd)) die("KVM_IRQFD");
	}
	if (opt_mode == 2) {
		uint64_t v;
		int r = get_msr(MSR_PVM_SIG, &v);
		if (opt_verbose) fprintf(stderr, "MSR 0x4b564d11 (signature) r=%d v=%#llx\n", r, (unsigned long long)v);
		r = get_msr(MSR_PVM_FEAT, &v);
		if (opt_verbose) fprintf(stderr, "MSR 0x4b564d12 (features) r=%d v=%#llx\n", r, (unsigned long long)v);
		set_msr(MSR_PVM_VIF, VIF | opt_vif_flags);
		r = get_msr(MSR_PVM_VIF, &v);
		if (opt_verbose) fprintf(stderr, "MSR 0x4b564d10 (VIF) r=%d v=%#llx\n", r, (unsigned long long)v);
	}
	struct kvm_ioeventfd io = { .addr = PORT_DONE, .len = 1, .fd = done_fd, .flags = KVM_IOEVENTFD_FLAG_PIO };
	if (ioctl(vm, KVM_IOEVENTFD, &io)) die("KVM_IOEVENTFD");
	stats_init();
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "m:n:w:a:p:e:f:t:g:v")) != -1) {
		switch (c) {
		case 'm': opt_mode = atoi(optarg); if (opt_mode == 4) opt_eoi = 1; break;
		case 'n': opt_n = atoi(optarg); break;
		case 'w': opt_warm = atoi(optarg); break;
		case 'a': opt_cross = !strcmp(optarg, "cross"); break;
		case 'p': opt_poll = atol(optarg); break;
		case 'e': opt_eoi = atoi(optarg); break;
		case 'f': opt_vif_flags = strtoull(optarg, 0, 0); break;
		case 't': opt_timeout = atol(optarg); break;
		case 'g': opt_gap = atol(optarg); break;
		case 'v': opt_verbose = 1; break;
		default: fprintf(stderr, "see the header of pvmwake.c\n"); return 2;
		}
	}
	int mark_fd = getenv("PVMWAKE_MARK") ? open("/sys/kernel/tracing/trace_marker", O_WRONLY) : -1;
	kick_fd = eventfd(0, EFD_CLOEXEC);
	done_fd = eventfd(0, EFD_CLOEXEC);
	setup();
	if (opt_mode == 9) { /* microbenchmark: exit to userspace and straight back */
		pin(0);
		for (int r = 0; r < 4; r++) {
			uint64_t t0 = now_ns();
			for (int i = 0; i < 20000; i++)
				if (ioctl(vcpu, KVM_RUN, 0) || run->exit_reason != KVM_EXIT_IO) { fprintf(stderr, "exit %u\n", run->exit_reason); return 1; }
			if (r) printf("mode 9: ring-3 out exiting to userspace and back: %.2f us each\n", (now_ns() - t0) / 20000.0 / 1e3);
		}
		return 0;
	}
	if (opt_mode == 7 || opt_mode == 8) { /* microbenchmarks: time 20000 guest operations per exit */
		pin(0);
		for (int r = 0; r < 4; r++) {
			uint64_t t0 = now_ns();
			if (ioctl(vcpu, KVM_RUN, 0) || run->exit_reason != KVM_EXIT_IO || run->io.port != PORT_WAIT) {
				fprintf(stderr, "microbenchmark: unexpected exit %u\n", run->exit_reason); dump_fault(); return 1;
			}
			uint64_t t1 = now_ns();
			if (r) printf("mode %d: %s: %.2f us each\n", opt_mode, opt_mode == 7 ? "ring-3 out to an ioeventfd port" :
			              "ring-3 int3 -> ring-0 gate -> iretq", (t1 - t0) / 20000.0 / 1e3);
		}
		return 0;
	}
	struct sigaction sa = { .sa_handler = sigusr };
	sigaction(SIGUSR1, &sa, NULL);
	pin(opt_cross ? 1 : 0);
	if (pthread_create(&vcpu_thr, NULL, vcpu_main, NULL)) die("pthread_create");
	usleep(20000); /* let the guest reach its first wait */

	int total = opt_warm + opt_n;
	uint64_t *lat = calloc(total, 8);
	uint64_t s0[NSTAT], s1[NSTAT];
	int failed = 0, done = 0;
	for (int i = 0; i < total; i++) {
		if (i == opt_warm) stats_read(s0);
		if (opt_gap) { /* let the guest reach its wait (and any halt polling run out) */
			struct timespec ts = { opt_gap / 1000000, (opt_gap % 1000000) * 1000 };
			nanosleep(&ts, NULL);
		}
		if (mark_fd >= 0 && write(mark_fd, "kick\n", 5) < 0) {}
		uint64_t one = 1, v, t0 = now_ns();
		if (opt_mode == 6) __atomic_store_n(&D64(56), 1, __ATOMIC_SEQ_CST); /* message first, then kick */
		if (write(kick_fd, &one, 8) != 8) die("write kick");
		struct pollfd p = { .fd = done_fd, .events = POLLIN };
		int r = poll(&p, 1, opt_timeout);
		if (r <= 0 || vcpu_failed) { failed = 1; break; }
		if (read(done_fd, &v, 8) != 8) die("read done");
		lat[i] = now_ns() - t0;
		done++;
	}
	stats_read(s1);
	if (failed) {
		if (done <= opt_warm) stats_read(s1), memset(s0, 0, sizeof s0);
		printf("mode %d: NO ANSWER after %d round trips (guest iters=%llu kicks=%llu used=%llu waits=%llu)\n",
		       opt_mode, done, (unsigned long long)D64(24), (unsigned long long)D64(8),
		       (unsigned long long)D64(16), (unsigned long long)D64(32));
		printf("  vcpu stats (totals):");
		for (int i = 0; want_stats[i]; i++) printf(" %s=%llu", want_stats[i], (unsigned long long)s1[i]);
		printf("\n");
		struct kvm_regs rg; struct kvm_lapic_state la;
		vcpu_stop = 1;
		pthread_kill(vcpu_thr, SIGUSR1);
		uint64_t one = 1; if (write(kick_fd, &one, 8) < 0) {}
		pthread_join(vcpu_thr, NULL);
		if (!ioctl(vcpu, KVM_GET_REGS, &rg)) printf("  rip=%#llx rflags=%#llx\n", rg.rip, rg.rflags);
		struct kvm_mp_state mp; if (!ioctl(vcpu, KVM_GET_MP_STATE, &mp)) printf("  mp_state=%u\n", mp.mp_state);
		if (opt_mode != 0 && !ioctl(vcpu, KVM_GET_LAPIC, &la)) {
			printf("  LAPIC ISR[0x40..]=%#x IRR[0x40..]=%#x TPR=%#x SVR=%#x\n", *(uint32_t *)(la.regs + 0x120),
			       *(uint32_t *)(la.regs + 0x220), *(uint32_t *)(la.regs + 0x80), *(uint32_t *)(la.regs + 0xf0));
		}
		if (opt_mode == 2) printf("  VIF if_=%u pending=%u\n", mem[VIF], mem[VIF + 1]);
		return 1;
	}
	qsort(lat + opt_warm, opt_n, 8, cmp_u64);
	uint64_t *L = lat + opt_warm;
	printf("mode %d %-5s poll=%-7ld eoi=%d gap=%ldus n=%d  median %.2f us  p10 %.2f  p90 %.2f  p99 %.2f  min %.2f  max %.2f\n",
	       opt_mode, opt_cross ? "cross" : "same", opt_poll, opt_eoi, opt_gap, opt_n, L[opt_n / 2] / 1e3,
	       L[opt_n / 10] / 1e3, L[opt_n * 9 / 10] / 1e3, L[opt_n * 99 / 100] / 1e3, L[0] / 1e3, L[opt_n - 1] / 1e3);
	printf("  per round trip:");
	for (int i = 0; want_stats[i]; i++)
		if (s1[i] != s0[i]) printf(" %s=%.2f", want_stats[i], (double)(s1[i] - s0[i]) / opt_n);
	printf("  (guest waits/iter=%.2f pveoi_hits=%llu)\n", (double)D64(32) / (double)D64(24), (unsigned long long)D64(48));
	vcpu_stop = 1;
	pthread_kill(vcpu_thr, SIGUSR1);
	uint64_t one = 1; if (write(kick_fd, &one, 8) < 0) {}
	pthread_join(vcpu_thr, NULL);
	return 0;
}
