/* stderr logging with sd-daemon priority prefixes. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <errno.h>

#include "numatier/log.h"
#include "numatier/util.h"

static int max_level = LOG_INFO;

static const char *const level_names[] = {
    [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
    [LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void nt_log_set_max_level(int level) { max_level = level; }
int nt_log_get_max_level(void) { return max_level; }

int nt_log_level_from_string(const char *s)
{
    if (strcasecmp(s, "error") == 0)
        return LOG_ERR;
    if (strcasecmp(s, "warn") == 0)
        return LOG_WARNING;
    for (size_t i = 0; i < NT_ARRAY_SIZE(level_names); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

const char *nt_log_level_to_string(int level)
{
    if (level < 0 || (size_t)level >= NT_ARRAY_SIZE(level_names))
        return "?";
    return level_names[level];
}

void nt_log(int level, const char *fmt, ...)
{
    if (level > max_level)
        return;
    /* Build the whole line first so concurrent writers never interleave. */
    char line[2048];
    int n = snprintf(line, sizeof(line), "<%d>", level);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
