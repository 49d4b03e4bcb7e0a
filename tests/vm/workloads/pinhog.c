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
#include <getopt.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/uio.h>

#define WORKLOAD_NAME "pinhog"
#define WORKLOAD_SALT 0xa5a5a5a5a5a5a5a5ULL
#include "workload.h"

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
 * /proc/self/pagemap (real frames need root). */
static void print_blocks(FILE *out, const struct hog *h, uint64_t *pfn0)
{
	uint64_t bsz = block_size(), seen[MAX_BLOCKS];
	size_t nseen = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	*pfn0 = 0;
	for (size_t i = 0; fd >= 0 && bsz && i < h->pages; i++) {
		uint64_t pfn, blk;
		size_t k;

		if (!pagemap_frame(fd, h->buf + i * h->psz, h->psz, &pfn))
			continue;
		if (i == 0)
			*pfn0 = pfn;
		blk = pfn * h->psz / bsz;
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
	size_t count[MAX_NODES] = { 0 }, other;
	int *status = page_nodes(h->buf, h->pages, h->psz);
	uint64_t pfn0;
	char tmp[4096];
	FILE *f;

	other = count_nodes(status, 0, h->pages, count);
	free(status);

	f = state_open(o->state, tmp, sizeof(tmp));
	fprintf(f, "pid=%d\nmib=%zu\npages=%zu\npin=%s\npinned=%zu\n", getpid(), o->mib, h->pages,
		pin_names[o->pin], h->pinned);
	for (int n = 0; n < MAX_NODES; n++)
		if (count[n])
			fprintf(f, "node%d=%zu\n", n, count[n]);
	print_blocks(f, h, &pfn0);
	fprintf(f, "pfn0=%llu\nother=%zu\nchecksum=%s\nready=1\n", (unsigned long long)pfn0, other,
		h->checksum);
	state_commit(f, o->state, tmp);
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
	catch_signals();
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
		mbind_node(h.buf, h.len, MPOL_BIND, o.bind, "mbind(MPOL_BIND)");
	fill_words((uint64_t *)h.buf, 0, h.len / sizeof(uint64_t));
	if (o.pin == PIN_IOURING)
		pin_iouring(&h);
	else if (o.pin == PIN_VMSPLICE)
		pin_vmsplice(&h);
	/* Without MPOL_MF_MOVE the pages stay where they are. */
	if (o.unbind)
		mbind_node(h.buf, h.len, MPOL_DEFAULT, -1, "mbind(MPOL_DEFAULT)");

	write_state(&o, &h);
	printf("pinhog pid=%d ready\n", getpid());
	while (!want_exit) {
		if (state_requested((const uint64_t *)h.buf, h.len / sizeof(uint64_t), &h.checksum))
			write_state(&o, &h);
		sigsuspend(&waitmask);
	}
	unpin(&h);
	return 0;
}
