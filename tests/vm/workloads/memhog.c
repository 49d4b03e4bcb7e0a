/* memhog: a VM test workload with a known memory layout.
 *
 * Allocates --mib MiB of anonymous memory, optionally bound to one node by a
 * memory policy, fills it with a verifiable pattern, optionally pins itself
 * to the CPUs of one node, then keeps the first --hot-pct percent hot by
 * rewriting it in a loop while the rest stays cold.
 *
 *   --touch-node N   first-touch the buffer while running on node N's CPUs
 *                    (default policy: the pages land on N), then run where
 *                    --cpu-node says
 *   --free           after setup, allow every CPU again: threads with no
 *                    explicit affinity, left where the setup put them
 *   --unbind         after filling, drop the --bind policy again (the pages
 *                    stay where they are, with no explicit binding left)
 *   --alternate-sec S  the first half of the buffer is first-touched on node
 *                    0's CPUs, the second half on node 1's; the hot region
 *                    (--hot-pct of the whole) switches half every S seconds
 *
 *   SIGUSR1  verify the pattern; print "CHECKSUM OK" or "CHECKSUM BAD ..."
 *   SIGUSR2  rewrite the state file (page placement as seen by move_pages)
 *   SIGTERM  exit 0
 *
 * The state file (--state FILE, replaced atomically) is key=value lines:
 * pid, mib, pages, bind, cpu_node, hot_pages, nodeN=<pages on node N>,
 * hot_nodeN=<hot pages on node N>, other=<pages not resident or in error>,
 * addr and hot_end=<the buffer's start and the end of its hot part, decimal>,
 * cpu=<the CPU it last ran on>, switches=<hot-half switches so far>,
 * pfn0=<the physical frame of the buffer's first page, from
 * /proc/self/pagemap (needs root); 0 if unknown>, pfns=<the frames of 64
 * pages spread evenly over the buffer (all of them if fewer),
 * space-separated>,
 * checksum=OK|BAD|unknown, ready=1.
 *
 * Built with gcc -static: it uses raw syscalls, so it needs no libnuma.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#define WORKLOAD_NAME "memhog"
#define WORKLOAD_SALT 0x5a5a5a5a5a5a5a5aULL
#include "workload.h"

struct opts {
	size_t mib;
	int bind;		/* -1: no policy */
	int whole_process;	/* set_mempolicy instead of mbind */
	int cpu_node;		/* -1: no pinning */
	int touch_node;		/* -1: first-touch wherever it runs */
	int free_cpus;		/* reset affinity to every CPU after setup */
	int unbind;		/* MPOL_DEFAULT on the buffer after filling */
	long alternate_sec;	/* 0: the hot region stays put */
	int hot_pct;
	long pause_us;
	long seconds;		/* 0: run until SIGTERM */
	const char *state;
};

static unsigned long switches;
static size_t hot_off_pages;	/* where the hot region starts, in pages */
static const char *checksum_state = "unknown";

static void bind_policy(const struct opts *o, void *buf, size_t len)
{
	unsigned long mask[2], maxnode;

	if (o->bind < 0)
		return;
	if (!o->whole_process) {
		mbind_node(buf, len, MPOL_BIND, o->bind, "mbind");
		return;
	}
	maxnode = node_mask(o->bind, mask);
	if (syscall(SYS_set_mempolicy, MPOL_BIND, mask, maxnode) != 0)
		die("set_mempolicy");
}

/* Parse a sysfs cpulist such as "0-3,8,10-11" into a cpu set. */
static int parse_cpulist(const char *s, cpu_set_t *set)
{
	CPU_ZERO(set);
	while (*s && *s != '\n') {
		char *end;
		long a = strtol(s, &end, 10), b = a;

		if (end == s)
			return -1;
		if (*end == '-') {
			s = end + 1;
			b = strtol(s, &end, 10);
			if (end == s)
				return -1;
		}
		for (long c = a; c <= b && c < CPU_SETSIZE; c++)
			CPU_SET(c, set);
		s = end;
		if (*s == ',')
			s++;
	}
	return CPU_COUNT(set) > 0 ? 0 : -1;
}

static void pin_to_node(int node)
{
	char path[128], buf[4096];
	cpu_set_t set;
	FILE *f;

	if (node < 0)
		return;
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
	f = fopen(path, "r");
	if (!f)
		die(path);
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (parse_cpulist(buf, &set) < 0) {
		fprintf(stderr, "memhog: node %d has no CPUs\n", node);
		exit(2);
	}
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die("sched_setaffinity");
}

static void allow_every_cpu(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	for (int c = 0; c < CPU_SETSIZE; c++)
		CPU_SET(c, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die("sched_setaffinity (every CPU)");
}

/* Fill [from, to) words, first-touching them on node's CPUs when node >= 0. */
static void fill(uint64_t *w, size_t from, size_t to, int node)
{
	pin_to_node(node);
	fill_words(w, from, to);
}

/* The frame behind a virtual address; 0 if unknown. */
static uint64_t pfn_of(const void *addr, size_t psz)
{
	uint64_t pfn = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		return 0;
	if (!pagemap_frame(fd, addr, psz, &pfn))
		pfn = 0;
	close(fd);
	return pfn;
}

static void write_state(const struct opts *o, char *buf, size_t pages, size_t hot_pages)
{
	size_t psz = (size_t)sysconf(_SC_PAGESIZE);
	size_t count[MAX_NODES] = { 0 }, hot[MAX_NODES] = { 0 }, other;
	int *status = page_nodes(buf, pages, psz);
	char tmp[4096];
	FILE *f;

	other = count_nodes(status, 0, pages, count);
	count_nodes(status, hot_off_pages, hot_off_pages + hot_pages, hot);
	free(status);

	f = state_open(o->state, tmp, sizeof(tmp));
	fprintf(f, "pid=%d\nmib=%zu\npages=%zu\nbind=%d\ncpu_node=%d\nhot_pages=%zu\n",
		getpid(), o->mib, pages, o->bind, o->cpu_node, hot_pages);
	fprintf(f, "addr=%lu\nhot_start=%lu\nhot_end=%lu\n", (unsigned long)buf,
		(unsigned long)(buf + hot_off_pages * psz),
		(unsigned long)(buf + (hot_off_pages + hot_pages) * psz));
	fprintf(f, "cpu=%d\nswitches=%lu\n", sched_getcpu(), switches);
	fprintf(f, "pfn0=%llu\npfns=", (unsigned long long)pfn_of(buf, psz));
	for (size_t i = 0, step = pages > 64 ? pages / 64 : 1; i < pages && i / step < 64; i += step)
		fprintf(f, "%s%llu", i ? " " : "", (unsigned long long)pfn_of(buf + i * psz, psz));
	fprintf(f, "\n");
	for (int n = 0; n < MAX_NODES; n++)
		if (count[n])
			fprintf(f, "node%d=%zu\nhot_node%d=%zu\n", n, count[n], n, hot[n]);
	fprintf(f, "other=%zu\nchecksum=%s\nready=1\n", other, checksum_state);
	state_commit(f, o->state, tmp);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: memhog [--mib N] [--bind NODE [--set-mempolicy]] [--cpu-node NODE]\n"
		"              [--touch-node NODE] [--free] [--unbind] [--alternate-sec S]\n"
		"              [--hot-pct P] [--pause-us US] [--seconds S] [--state FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "bind", required_argument, NULL, 'b' },
		{ "set-mempolicy", no_argument, NULL, 'P' },
		{ "cpu-node", required_argument, NULL, 'c' },
		{ "hot-pct", required_argument, NULL, 'h' },
		{ "pause-us", required_argument, NULL, 'u' },
		{ "seconds", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'S' },
		{ "touch-node", required_argument, NULL, 'T' },
		{ "free", no_argument, NULL, 'F' },
		{ "unbind", no_argument, NULL, 'U' },
		{ "alternate-sec", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .mib = 64, .bind = -1, .cpu_node = -1, .touch_node = -1,
			  .hot_pct = 25, .pause_us = 1000 };
	size_t psz = (size_t)sysconf(_SC_PAGESIZE), len, pages, hot_pages, hot_words;
	struct timespec start, now, last_switch;
	uint64_t *w;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.mib = strtoul(optarg, NULL, 0); break;
		case 'b': o.bind = atoi(optarg); break;
		case 'P': o.whole_process = 1; break;
		case 'c': o.cpu_node = atoi(optarg); break;
		case 'h': o.hot_pct = atoi(optarg); break;
		case 'u': o.pause_us = atol(optarg); break;
		case 's': o.seconds = atol(optarg); break;
		case 'S': o.state = optarg; break;
		case 'T': o.touch_node = atoi(optarg); break;
		case 'F': o.free_cpus = 1; break;
		case 'U': o.unbind = 1; break;
		case 'A': o.alternate_sec = atol(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || o.mib == 0 || o.hot_pct < 0 || o.hot_pct > 100 ||
	    o.alternate_sec < 0 || (o.alternate_sec && o.hot_pct > 50))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	catch_signals();

	len = o.mib << 20;
	pages = len / psz;
	hot_pages = pages * (size_t)o.hot_pct / 100;
	hot_words = hot_pages * psz / sizeof(*w);
	w = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w == MAP_FAILED)
		die("mmap");
	/* Small pages, so placement is counted per 4 KiB page everywhere. */
	madvise(w, len, MADV_NOHUGEPAGE);
	bind_policy(&o, w, len);
	if (o.alternate_sec) {
		fill(w, 0, len / sizeof(*w) / 2, 0);
		fill(w, len / sizeof(*w) / 2, len / sizeof(*w), 1);
	} else {
		fill(w, 0, len / sizeof(*w), o.touch_node >= 0 ? o.touch_node : o.cpu_node);
	}
	/* Without MPOL_MF_MOVE the pages stay put: only the policy goes. */
	if (o.unbind)
		mbind_node(w, len, MPOL_DEFAULT, -1, "mbind(MPOL_DEFAULT)");
	pin_to_node(o.cpu_node);
	if (o.free_cpus)
		allow_every_cpu();

	write_state(&o, (char *)w, pages, hot_pages);
	printf("memhog pid=%d ready\n", getpid());

	clock_gettime(CLOCK_MONOTONIC, &start);
	last_switch = start;
	while (!want_exit) {
		if (state_requested(w, len / sizeof(*w), &checksum_state))
			write_state(&o, (char *)w, pages, hot_pages);
		/* Rewrite the hot part with its own contents: pages get touched
		 * and dirtied, yet the checksum stays valid. */
		size_t hot_off_words = hot_off_pages * psz / sizeof(*w);
		for (size_t i = 0; i < hot_words; i += 8) {
			volatile uint64_t *p = &w[hot_off_words + i];
			*p = *p;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (o.seconds > 0 && now.tv_sec - start.tv_sec >= o.seconds)
			break;
		if (o.alternate_sec && now.tv_sec - last_switch.tv_sec >= o.alternate_sec) {
			hot_off_pages = hot_off_pages ? 0 : pages / 2;
			switches++;
			last_switch = now;
		}
		if (o.pause_us > 0 || hot_words == 0)
			usleep(o.pause_us > 0 ? (useconds_t)o.pause_us : 100000);
	}
	return 0;
}
