/* Logging to stderr with sd-daemon "<N>" priority prefixes, so journald
 * keeps each line's level when the daemon runs under systemd. */
#pragma once

#include <syslog.h>

void nt_log_set_max_level(int level);
int nt_log_get_max_level(void);
/* Parse "debug", "info", ... into a syslog level; negative errno if unknown. */
int nt_log_level_from_string(const char *s);
const char *nt_log_level_to_string(int level);

void nt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)   nt_log(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    nt_log(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  nt_log(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) nt_log(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   nt_log(LOG_ERR, __VA_ARGS__)
