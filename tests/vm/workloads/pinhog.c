/* pinhog: a VM test workload whose pages cannot be migrated, so the memory
 * block holding them cannot be offlined.
 *
 * Allocates --mib MiB (default 4, at most 1024) of anonymous memory,
 * optionally bound to one node while it is filled with a verifiable
 * pattern, then pins it:
 *
 *   --pin iouring   (the default) long-term pin (FOLL_LONGTERM) by
 *                   registering the buffer with io_uring
 *                   (IORING_REGISTER_BUFFERS).  The kernel first migrates
 *                   pages out of ZONE_MOVABLE, so pinned pages always sit
 *                   in a kernel zone (Normal, DMA32).
 *   --pin vmsplice  the pages are spliced into a pipe nobody reads: the pipe
 *                   holds a reference on each page, which makes every
 *                   migration attempt fail, even in ZONE_MOVABLE.
 *   --pin none      no pin (a control run)
 *
 *   --bind NODE     MPOL_BIND the buffer to NODE before touching it
 *   --unbind        after pinning, drop the policy again (the pages stay;
 *                   no explicit binding is left for a planner to refuse)
 *
 *   SIGUSR1  verify the pattern; print "CHECKSUM OK" or "CHECKSUM BAD ..."
 *   SIGUSR2  rewrite the state file
 *   SIGTERM  unpin and exit 0
 *
 * The state file (--state FILE, replaced atomically) is key=value lines:
 * pid, mib, pages, pin, pinned=<pages pinned>, nodeN=<pages on node N>,
 * other=<pages not resident>, pfn0=<frame of the first page>,
 * blocks=<memory block ids holding the buffer, comma-separated>,
 * checksum=OK|BAD|unknown, ready=1.
 *
 * Built with gcc -static: raw syscalls only (no liburing, no libnuma).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define MPOL_DEFAULT 0
#define MPOL_BIND 2
#define MAX_NODES 64
#define MAX_BLOCKS 64
#define MAX_PIPES 128

enum pin_kind { PIN_NONE, PIN_IOURING, PIN_VMSPLICE };
static const char *const pin_names[] = { "none", "iouring", "vmsplice" };

struct opts {
	size_t mib;
	int bind;		/* -1: no policy */
	int unbind;
	enum pin_kind pin;
	const char *state;
};

struct hog {
	char *buf;
	size_t len, pages, psz;
	size_t pinned;		/* pages */
	int ring_fd;
	int pipes[MAX_PIPES], nr_pipes;	/* both ends of each */
	const char *checksum;
};

static volatile sig_atomic_t want_check, want_state, want_exit;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		want_check = 1;
	else if (sig == SIGUSR2)
		want_state = 1;
	else
		want_exit = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "pinhog: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t pattern(size_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 31) ^ 0xa5a5a5a5a5a5a5a5ULL;
}

static void fill(uint64_t *w, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		w[i] = pattern(i);
}

static int verify(const uint64_t *w, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		if (w[i] != pattern(i)) {
			printf("CHECKSUM BAD at offset %zu\n", i * sizeof(*w));
			return -1;
		}
	printf("CHECKSUM OK\n");
	return 0;
}

static void set_policy(struct hog *h, int mode, int node)
{
	unsigned long mask[2] = { 0, 0 };

	if (node >= MAX_NODES) {
		fprintf(stderr, "pinhog: node %d out of range\n", node);
		exit(2);
	}
	if (node >= 0)
		mask[0] = 1UL << node;
	/* maxnode is a bit count and the kernel drops the last bit: add one. */
	if (syscall(SYS_mbind, h->buf, h->len, mode, node >= 0 ? mask : NULL,
		    node >= 0 ? MAX_NODES + 1 : 0, 0) != 0)
		die(mode == MPOL_BIND ? "mbind(MPOL_BIND)" : "mbind(MPOL_DEFAULT)");
}

/* FOLL_LONGTERM through io_uring: the registered buffer stays pinned until
 * the ring is closed.  Root needs no RLIMIT_MEMLOCK room. */
static void pin_iouring(struct hog *h)
{
	struct io_uring_params p;
	struct iovec iov = { .iov_base = h->buf, .iov_len = h->len };

	memset(&p, 0, sizeof(p));
	h->ring_fd = (int)syscall(SYS_io_uring_setup, 4, &p);
	if (h->ring_fd < 0)
		die("io_uring_setup");
	if (syscall(SYS_io_uring_register, h->ring_fd, IORING_REGISTER_BUFFERS, &iov, 1) != 0)
		die("io_uring_register(IORING_REGISTER_BUFFERS)");
	h->pinned = h->pages;
}

/* vmsplice without SPLICE_F_GIFT: the pipe takes a page reference per
 * buffer slot, and an unread pipe keeps them.  Each pipe is grown as far as
 * we are allowed (pipe-max-size without CAP_SYS_RESOURCE); more pipes take
 * the rest. */
static void pin_vmsplice(struct hog *h)
{
	size_t off = 0;

	while (off < h->len) {
		int fd[2];

		if (h->nr_pipes == MAX_PIPES) {
			fprintf(stderr, "pinhog: more than %d pipes needed\n", MAX_PIPES);
			exit(1);
		}
		if (pipe(fd) != 0)
			die("pipe");
		h->pipes[h->nr_pipes++] = fd[0];
		h->pipes[h->nr_pipes++] = fd[1];
		if (fcntl(fd[1], F_SETPIPE_SZ, (int)(h->len - off)) < 0 && errno == EPERM)
			fcntl(fd[1], F_SETPIPE_SZ, 1 << 20);
		while (off < h->len) {
			struct iovec iov = { .iov_base = h->buf + off, .iov_len = h->len - off };
			ssize_t n = vmsplice(fd[1], &iov, 1, SPLICE_F_NONBLOCK);

			if (n < 0 && errno == EAGAIN)
				break;	/* this pipe is full */
			if (n <= 0)
				die("vmsplice");
			off += (size_t)n;
		}
	}
	h->pinned = h->pages;
}

static void unpin(struct hog *h)
{
	if (h->ring_fd >= 0)
		close(h->ring_fd);
	for (int i = 0; i < h->nr_pipes; i++)
		close(h->pipes[i]);
	h->ring_fd = -1;
	h->nr_pipes = 0;
	h->pinned = 0;
}

static uint64_t block_size(void)
{
	char s[64] = "";
	FILE *f = fopen("/sys/devices/system/memory/block_size_bytes", "r");

	if (f) {
		if (!fgets(s, sizeof(s), f))
			s[0] = '\0';
		fclose(f);
	}
	return strtoull(s, NULL, 16);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The distinct memory blocks behind the buffer, in ascending order, from
 * /proc/self/pagemap (bit 63 present, bits 0-54 the frame; real frames
 * need root). */
static void print_blocks(FILE *out, const struct hog *h, uint64_t *pfn0)
{
	uint64_t bsz = block_size(), seen[MAX_BLOCKS];
	size_t nseen = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	*pfn0 = 0;
	for (size_t i = 0; fd >= 0 && bsz && i < h->pages; i++) {
		uint64_t e = 0, blk;
		size_t k;

		if (pread(fd, &e, sizeof(e), (off_t)(((uintptr_t)h->buf / h->psz + i) * 8)) != sizeof(e) ||
		    !(e >> 63))
			continue;
		if (i == 0)
			*pfn0 = e & ((1ULL << 55) - 1);
		blk = (e & ((1ULL << 55) - 1)) * h->psz / bsz;
		for (k = 0; k < nseen && seen[k] != blk; k++)
			;
		if (k == nseen && nseen < MAX_BLOCKS)
			seen[nseen++] = blk;
	}
	if (fd >= 0)
		close(fd);
	qsort(seen, nseen, sizeof(seen[0]), cmp_u64);
	fprintf(out, "blocks=");
	for (size_t k = 0; k < nseen; k++)
		fprintf(out, "%s%llu", k ? "," : "", (unsigned long long)seen[k]);
	fprintf(out, "\n");
}

static void write_state(const struct opts *o, const struct hog *h)
{
	size_t count[MAX_NODES] = { 0 }, other = 0;
	void **addrs = calloc(h->pages, sizeof(*addrs));
	int *status = calloc(h->pages, sizeof(*status));
	uint64_t pfn0;
	char tmp[4096];
	FILE *f;

	if (!addrs || !status)
		die("calloc");
	for (size_t i = 0; i < h->pages; i++)
		addrs[i] = h->buf + i * h->psz;
	/* nodes == NULL: query where each page is, move nothing. */
	if (syscall(SYS_move_pages, 0, h->pages, addrs, NULL, status, 0) != 0)
		die("move_pages");
	for (size_t i = 0; i < h->pages; i++) {
		if (status[i] >= 0 && status[i] < MAX_NODES)
			count[status[i]]++;
		else
			other++;
	}
	free(addrs);
	free(status);

	if (!o->state) {
		f = stdout;
	} else {
		snprintf(tmp, sizeof(tmp), "%s.tmp", o->state);
		f = fopen(tmp, "w");
		if (!f)
			die(tmp);
	}
	fprintf(f, "pid=%d\nmib=%zu\npages=%zu\npin=%s\npinned=%zu\n", getpid(), o->mib, h->pages,
		pin_names[o->pin], h->pinned);
	for (int n = 0; n < MAX_NODES; n++)
		if (count[n])
			fprintf(f, "node%d=%zu\n", n, count[n]);
	print_blocks(f, h, &pfn0);
	fprintf(f, "pfn0=%llu\nother=%zu\nchecksum=%s\nready=1\n", (unsigned long long)pfn0, other,
		h->checksum);
	if (f == stdout) {
		fflush(f);
		return;
	}
	if (fclose(f) != 0 || rename(tmp, o->state) != 0)
		die(o->state);
}

static void usage(void)
{
	fprintf(stderr, "usage: pinhog [--mib N] [--bind NODE [--unbind]] [--pin iouring|vmsplice|none]\n"
			"              [--state FILE]\n");
	exit(2);
}

static enum pin_kind parse_pin(const char *s)
{
	for (size_t i = 0; i < sizeof(pin_names) / sizeof(pin_names[0]); i++)
		if (strcmp(s, pin_names[i]) == 0)
			return (enum pin_kind)i;
	usage();
	return PIN_NONE;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "bind", required_argument, NULL, 'b' },
		{ "unbind", no_argument, NULL, 'U' },
		{ "pin", required_argument, NULL, 'p' },
		{ "state", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .mib = 4, .bind = -1, .pin = PIN_IOURING };
	struct hog h = { .ring_fd = -1, .checksum = "unknown" };
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t handled, waitmask;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.mib = strtoul(optarg, NULL, 0); break;
		case 'b': o.bind = atoi(optarg); break;
		case 'U': o.unbind = 1; break;
		case 'p': o.pin = parse_pin(optarg); break;
		case 'S': o.state = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || o.mib == 0 || o.mib > 1024 || (o.unbind && o.bind < 0))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* Signals are taken only inside sigsuspend(), so none is lost between
	 * testing the flags and going to sleep. */
	sigemptyset(&handled);
	sigaddset(&handled, SIGUSR1);
	sigaddset(&handled, SIGUSR2);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigprocmask(SIG_BLOCK, &handled, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	sigdelset(&waitmask, SIGUSR2);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	h.psz = (size_t)sysconf(_SC_PAGESIZE);
	h.len = o.mib << 20;
	h.pages = h.len / h.psz;
	h.buf = mmap(NULL, h.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h.buf == MAP_FAILED)
		die("mmap");
	/* Small pages: a THP would be one unit, and the counts are per page. */
	madvise(h.buf, h.len, MADV_NOHUGEPAGE);
	if (o.bind >= 0)
		set_policy(&h, MPOL_BIND, o.bind);
	fill((uint64_t *)h.buf, h.len / sizeof(uint64_t));
	if (o.pin == PIN_IOURING)
		pin_iouring(&h);
	else if (o.pin == PIN_VMSPLICE)
		pin_vmsplice(&h);
	/* Without MPOL_MF_MOVE the pages stay where they are. */
	if (o.unbind)
		set_policy(&h, MPOL_DEFAULT, -1);

	write_state(&o, &h);
	printf("pinhog pid=%d ready\n", getpid());
	while (!want_exit) {
		if (want_check) {
			want_check = 0;
			h.checksum = verify((const uint64_t *)h.buf, h.len / sizeof(uint64_t)) == 0 ? "OK" : "BAD";
			want_state = 1;
		}
		if (want_state) {
			want_state = 0;
			write_state(&o, &h);
		}
		sigsuspend(&waitmask);
	}
	unpin(&h);
	return 0;
}
