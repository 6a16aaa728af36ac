/* The host smoke test's program (scripts/test-posix): built with flexos-host-cc against
 * target/posix/musl's libc.a and the host shim, run on the host, its output compared
 * line by line. It reaches every replaced part of musl: plain system calls of 0..6
 * arguments through syscall_arch.h (write, openat, read, mmap, munmap, clock_gettime,
 * getpid, futex), the thread pointer (__set_thread_area: errno and __thread variables
 * live behind %fs), thread creation (__clone), a detached thread's exit
 * (__unmapself), cancellation points (syscall_cp, linked by pthread_cancel) and
 * sigaction's restorer (restore). Usage: smoke WORD DIR; exits 3. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static __thread long tls_value = 7;
static sem_t detached_done;

static void *worker(void *arg)
{
	for (int i = 0; i < 100000; i++) {
		pthread_mutex_lock(&lock);
		counter++;
		pthread_mutex_unlock(&lock);
	}
	tls_value += (long)arg; /* each thread has its own copy, starting at 7 */
	return (void *)tls_value;
}

static void *detached(void *arg)
{
	(void)arg;
	sem_post(&detached_done);
	return 0; /* pthread_exit -> __unmapself: the thread frees its own stack */
}

static void *cancelled(void *arg)
{
	(void)arg;
	for (;;)
		pause(); /* a cancellation point; never returns on its own */
	return 0;
}

static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
	handled += sig == SIGUSR1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: smoke WORD DIR\n");
		return 2;
	}
	printf("hello from musl: %s\n", argv[1]);

	/* malloc small and large (mmap, munmap) */
	char *small = malloc(100), *big = malloc(8 << 20);
	memset(big, 'x', 8 << 20);
	snprintf(small, 100, "%.3f %g %ld", 3.14159, 1e100, strtol("-42", 0, 10));
	printf("malloc: %s %c\n", small, big[(8 << 20) - 1]);
	free(big);
	free(small);

	/* files: openat, write, read, close, unlink */
	char path[4096];
	snprintf(path, sizeof path, "%s/smoke.txt", argv[2]);
	FILE *f = fopen(path, "w");
	fprintf(f, "line one\nline two\n");
	fclose(f);
	char line[64] = "";
	f = fopen(path, "r");
	fgets(line, sizeof line, f);
	fgets(line, sizeof line, f);
	fclose(f);
	printf("file: %s", line);
	unlink(path);

	/* errno through the thread pointer */
	int fd = open("/nonexistent/flexos", O_RDONLY);
	printf("open: %d %s\n", fd, strerror(errno));

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct timespec nap = {0, 1000000};
	nanosleep(&nap, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
	printf("clock: %s\n", ns >= 1000000 ? "advanced" : "stuck");
	printf("pid: %s\n", getpid() > 1 ? "ok" : "bad");

	/* threads: clone, futexes, per-thread variables */
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], 0, worker, (void *)(i + 1));
	long results[4];
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		results[i] = (long)r;
	}
	printf("threads: counter=%ld results=%ld %ld %ld %ld main tls=%ld\n", counter,
	       results[0], results[1], results[2], results[3], tls_value);

	/* a detached thread ends through __unmapself */
	sem_init(&detached_done, 0, 0);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t d;
	pthread_create(&d, &attr, detached, 0);
	sem_wait(&detached_done);
	printf("detached: ok\n");

	/* cancellation: on the host the shim's real signals wake the thread in pause() */
	pthread_t c;
	pthread_create(&c, 0, cancelled, 0);
	pthread_cancel(c);
	void *cr;
	pthread_join(c, &cr);
	printf("cancel: %s\n", cr == PTHREAD_CANCELED ? "canceled" : "not canceled");

	/* sigaction installs __restore_rt as the restorer: a handled signal (real on the
	 * host) returns through it */
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, 0);
	raise(SIGUSR1);
	raise(SIGUSR1);
	printf("signal: handled %d\n", (int)handled);

	fflush(stdout);
	return 3;
}
