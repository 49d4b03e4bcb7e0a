/* Building one-line summaries in fixed buffers (pure: policy/ may use it). */
#pragma once

#include <stddef.h>

/* Append to the NUL-terminated string in buf (size bytes in all);
 * truncates silently, as a summary may. */
__attribute__((format(printf, 3, 4)))
void nt_appendf(char *buf, size_t size, const char *fmt, ...);
