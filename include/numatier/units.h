/* Parsing and printing of the units that config values and the CLI use:
 * sizes, durations, percentages, booleans and NUMA node lists.
 *
 * Every parser accepts leading and trailing whitespace, writes its output
 * only on success, and returns 0, -EINVAL (malformed) or -ERANGE (well
 * formed but too large). The _why variants also say what was wrong, in a
 * few words fit for "file:line: key: <why>" messages; why may be NULL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "numatier/nodeset.h"

/* "512M", "4KiB", "1g", "4096": K/M/G/T are binary (1K = 1024), the suffix is
 * case-insensitive and may end in B or iB; a bare number is bytes. */
int nt_parse_size(const char *s, uint64_t *bytes);
/* "30s", "100ms", "5min": units us, ms, s, m or min, h, d (lower case; a
 * capital M would read as months to systemd users). A unit is required. */
int nt_parse_duration(const char *s, uint64_t *usec);
/* "5%", "5" or "12.5%": 0 to 100. */
int nt_parse_percent(const char *s, double *pct);
/* yes/no, true/false, on/off, 1/0, case-insensitive. */
int nt_parse_bool(const char *s, bool *b);
/* "2,3", "0-3,8", "" (the empty set). Nodes below NT_MAX_NODES. */
int nt_parse_nodelist(const char *s, struct nt_nodeset *set);
/* A plain non-negative decimal integer: no sign, no base prefix. */
int nt_parse_uint(const char *s, uint64_t *v);

int nt_parse_size_why(const char *s, uint64_t *bytes, const char **why);
int nt_parse_duration_why(const char *s, uint64_t *usec, const char **why);
int nt_parse_percent_why(const char *s, double *pct, const char **why);
int nt_parse_bool_why(const char *s, bool *b, const char **why);
int nt_parse_nodelist_why(const char *s, struct nt_nodeset *set, const char **why);
int nt_parse_uint_why(const char *s, uint64_t *v, const char **why);

/* Formatting back, for dumps: "512M", "30s", "1500ms" -- the shortest form
 * that parses back to exactly the same value. Output is truncated to len
 * like snprintf and always NUL-terminated (when len > 0). */
#define NT_SIZE_STRLEN     24     /* enough for any nt_format_size() */
#define NT_DURATION_STRLEN 24     /* enough for any nt_format_duration() */
#define NT_NODELIST_STRLEN 4096   /* enough for any set of NT_MAX_NODES */
void nt_format_size(uint64_t bytes, char *buf, size_t len);
void nt_format_duration(uint64_t usec, char *buf, size_t len);
/* "0-3,8"; the empty set prints as "". */
void nt_format_nodelist(const struct nt_nodeset *set, char *buf, size_t len);
