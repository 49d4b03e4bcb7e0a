/* workload.h: what the VM test workloads share.
 *
 * Each workload is its own static binary built from one .c file, so this
 * header holds static functions only; it is never built by itself.  Define
 * WORKLOAD_NAME (the prefix of error messages) and WORKLOAD_SALT (mixed into
 * the fill pattern, so two workloads never hold the same bytes) before
 * including it.
 *
 * The protocol every workload follows:
 *   SIGUSR1  verify the pattern; print "CHECKSUM OK" or "CHECKSUM BAD ...",
 *            then rewrite the state file
 *   SIGUSR2  rewrite the state file
 *   SIGTERM, SIGINT  exit 0
 * The state file (--state FILE) is replaced atomically: written to FILE.tmp,
 * then renamed; without --state it goes to stdout.
 */
#ifndef NUMATIER_VM_WORKLOAD_H
#define NUMATIER_VM_WORKLOAD_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(WORKLOAD_NAME) || !defined(WORKLOAD_SALT)
#error "define WORKLOAD_NAME and WORKLOAD_SALT before including workload.h"
#endif

#define MPOL_DEFAULT 0
#define MPOL_BIND 2
#define MAX_NODES 64

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

static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static void die(const char *what)
{
	fprintf(stderr, WORKLOAD_NAME ": %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Word i of the buffer: distinct per offset, so a page that comes back at
 * the wrong place is caught, not only a page that comes back damaged. */
static inline uint64_t pattern(size_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL;

	return x ^ (x >> 29) ^ (uint64_t)WORKLOAD_SALT;
}

static inline void fill_words(uint64_t *w, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		w[i] = pattern(i);
}

static inline int verify(const uint64_t *w, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		if (w[i] != pattern(i)) {
			printf("CHECKSUM BAD at offset %zu\n", i * sizeof(*w));
			return -1;
		}
	printf("CHECKSUM OK\n");
	return 0;
}

/* Act on the signals that arrived: SIGUSR1 verifies the buffer and records
 * the verdict in *checksum.  Returns whether a state file is due. */
static inline bool state_requested(const uint64_t *w, size_t nwords, const char **checksum)
{
	if (want_check) {
		want_check = 0;
		*checksum = verify(w, nwords) == 0 ? "OK" : "BAD";
		want_state = 1;
	}
	if (!want_state)
		return false;
	want_state = 0;
	return true;
}

/* Fill mask with node (nothing when node < 0) and return the maxnode to
 * pass with it: a bit count, of which the kernel ignores the last bit. */
static inline unsigned long node_mask(int node, unsigned long mask[2])
{
	if (node >= MAX_NODES) {
		fprintf(stderr, WORKLOAD_NAME ": node %d out of range\n", node);
		exit(2);
	}
	mask[0] = mask[1] = 0;
	if (node < 0)
		return 0;
	mask[0] = 1UL << node;
	return MAX_NODES + 1;
}

/* mbind the buffer to node with mode; node < 0 passes no nodemask, as
 * MPOL_DEFAULT wants.  Without MPOL_MF_MOVE no page moves. */
static inline void mbind_node(void *buf, size_t len, int mode, int node, const char *what)
{
	unsigned long mask[2];
	unsigned long maxnode = node_mask(node, mask);

	if (syscall(SYS_mbind, buf, len, mode, node >= 0 ? mask : NULL, maxnode, 0) != 0)
		die(what);
}

/* Where each page of buf is: move_pages with nodes == NULL moves nothing
 * and fills status with a node or a negative errno per page.  Free it. */
static inline int *page_nodes(char *buf, size_t pages, size_t psz)
{
	void **addrs = calloc(pages, sizeof(*addrs));
	int *status = calloc(pages, sizeof(*status));

	if (!addrs || !status)
		die("calloc");
	for (size_t i = 0; i < pages; i++)
		addrs[i] = buf + i * psz;
	if (syscall(SYS_move_pages, 0, pages, addrs, NULL, status, 0) != 0)
		die("move_pages");
	free(addrs);
	return status;
}

/* Add pages [from, to) to count[node]; return how many are on no node
 * (not resident, or in error). */
static inline size_t count_nodes(const int *status, size_t from, size_t to, size_t count[MAX_NODES])
{
	size_t other = 0;

	for (size_t i = from; i < to; i++) {
		if (status[i] >= 0 && status[i] < MAX_NODES)
			count[status[i]]++;
		else
			other++;
	}
	return other;
}

/* The frame behind addr from an open /proc/self/pagemap: bits 0-54 of its
 * entry, when bit 63 (present) is set.  Only root sees real frames. */
static inline bool pagemap_frame(int fd, const void *addr, size_t psz, uint64_t *pfn)
{
	uint64_t e = 0;

	if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / psz * sizeof(e))) != sizeof(e) ||
	    !(e >> 63))
		return false;
	*pfn = e & ((1ULL << 55) - 1);
	return true;
}

static inline FILE *state_open(const char *path, char *tmp, size_t tmpsz)
{
	FILE *f;

	if (!path)
		return stdout;
	snprintf(tmp, tmpsz, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		die(tmp);
	return f;
}

static inline void state_commit(FILE *f, const char *path, const char *tmp)
{
	if (f == stdout) {
		fflush(f);
		return;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die(path);
}

#endif
