/* Small helpers shared by every part: cleanup attributes and file reads. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void nt_freep(void *p) { free(*(void **)p); }
static inline void nt_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void nt_closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void nt_closedirp(DIR **d) { if (*d) closedir(*d); }

#define _cleanup_(f)       __attribute__((cleanup(f)))
#define _cleanup_free_     _cleanup_(nt_freep)
#define _cleanup_fclose_   _cleanup_(nt_fclosep)
#define _cleanup_close_    _cleanup_(nt_closep)
#define _cleanup_closedir_ _cleanup_(nt_closedirp)

/* Hand ownership out of a cleanup-managed variable. */
#define NT_TAKE_PTR(p) ({ __typeof__(p) _tmp = (p); (p) = NULL; _tmp; })
#define NT_TAKE_FD(fd) ({ int _tmp = (fd); (fd) = -1; _tmp; })

/* Join a root prefix ("/" or a fixture tree) and an absolute path.
 * Returns a malloc'd string or NULL on ENOMEM. */
char *nt_path_join(const char *root, const char *path);

/* Read a whole small file below root into a malloc'd NUL-terminated buffer
 * (trailing newline stripped). Returns 0 or negative errno. */
int nt_read_file(const char *root, const char *path, char **out);

/* Write value to a sysfs/tracefs/procfs file below root in one write(),
 * as such files take it; a short write is a failure. Returns 0 or
 * negative errno (the kernel's answer to the write). */
int nt_write_file(const char *root, const char *path, const char *value);

/* opendir() of a path below root; NULL with errno set on failure. */
DIR *nt_opendir_below(const char *root, const char *path);

/* "memory12" with prefix "memory" -> 12; false unless the rest is all digits. */
bool nt_name_with_id(const char *name, const char *prefix, unsigned *id);

/* Read a file and parse it as an unsigned decimal integer. */
int nt_read_u64(const char *root, const char *path, uint64_t *out);

/* Connect a non-blocking, close-on-exec stream socket to a Unix socket
 * path. Returns the fd or negative errno. */
int nt_unix_connect(const char *path);

/* Monotonic time in microseconds. Only daemon/ and cli/ may call it. */
uint64_t nt_now_usec(void);
/* Wall-clock (CLOCK_REALTIME) time in microseconds, for records that
 * outlive a boot (the ledger). Only daemon/ and cli/ may call it. */
uint64_t nt_realtime_usec(void);
