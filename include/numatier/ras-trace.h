/* RAS events through a private tracefs instance (instances/numatier):
 * setting it up and tearing it down, each event's layout parsed from its
 * `format` file at run time, and the per-CPU trace_pipe_raw ring-buffer
 * pages decoded into records whose fields are read by name.
 *
 * The daemon polls the readers' fds (EPOLLIN) on its sd-event loop and
 * calls nt_ras_trace_read() for a CPU whose fd is readable. Nothing here
 * interprets an event: that is the decoders' and policy's job. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NT_RAS_TRACE_INSTANCE "numatier"

/* ---- format files ---------------------------------------------------------- */

enum nt_trace_field_kind {
    NT_TRACE_FIELD_SCALAR,   /* an integer of 1, 2, 4 or 8 bytes */
    NT_TRACE_FIELD_BYTES,    /* a fixed array or an opaque type (u8 comp_id[16], uuid_t) */
    NT_TRACE_FIELD_DATA_LOC, /* __data_loc: u32 = length << 16 | offset from the entry's start */
    NT_TRACE_FIELD_REL_LOC,  /* __rel_loc: the same, offset from the end of the field */
};

struct nt_trace_field {
    char *type;              /* as the file says: "u64", "__data_loc char[]" */
    char *name;
    unsigned offset, size;   /* in the entry, which starts with common_type */
    bool is_signed;
    enum nt_trace_field_kind kind;
    unsigned elems;          /* BYTES with "[N]": N; else 0 */
};

struct nt_trace_format {
    char *system, *name;     /* "mce", "mce_record" */
    unsigned id;             /* the value of common_type */
    struct nt_trace_field *fields; /* common_* first, in file order */
    size_t n_fields;
    unsigned min_size;       /* end of the last field: a shorter entry is truncated */
};

/* Parse the text of events/SYSTEM/NAME/format. -EINVAL (nothing leaked)
 * if it has no name, no ID, no common_type or a malformed field line. */
int nt_trace_format_parse(const char *system, const char *text, struct nt_trace_format *out);
void nt_trace_format_done(struct nt_trace_format *f);
const struct nt_trace_field *nt_trace_format_field(const struct nt_trace_format *f, const char *name);

/* ---- page layout: events/header_page and events/header_event ---------------- */

struct nt_trace_page_layout {
    unsigned ts_offset, ts_size;         /* u64 time_stamp of the page */
    unsigned commit_offset, commit_size; /* local_t commit: bytes of data, flags above */
    unsigned data_offset;                /* char data[] */
    size_t page_size;                    /* data offset + size: one trace_pipe_raw read */
    unsigned type_len_bits, delta_bits;  /* the event header: 5 + 27 bits */
    unsigned type_padding, type_extend, type_stamp, max_data_type_len; /* 29, 30, 31, 28 */
};

/* header_event may be NULL: the values every kernel since 2.6.31 has. */
int nt_trace_page_layout_parse(const char *header_page, const char *header_event,
                               struct nt_trace_page_layout *out);

/* ---- records ---------------------------------------------------------------- */

struct nt_ras_record {
    const struct nt_trace_format *fmt;
    unsigned cpu;
    uint64_t ts;             /* the instance's trace clock, ns ("boot" when numatierd made it) */
    const uint8_t *data;     /* the entry, from common_type; valid during the callback */
    size_t len;              /* its length as the ring buffer stored it (may be padded) */
};

/* Read a field by name. u64 zero-extends the raw bits, s64 sign-extends a
 * signed field. bytes gives an array's or a data_loc's bytes; str a
 * data_loc string (NUL within bounds). -ENOENT no such field, -EINVAL
 * wrong kind, -EBADMSG the entry is too short or the data_loc points out. */
int nt_ras_record_u64(const struct nt_ras_record *r, const char *field, uint64_t *out);
int nt_ras_record_s64(const struct nt_ras_record *r, const char *field, int64_t *out);
int nt_ras_record_bytes(const struct nt_ras_record *r, const char *field,
                        const uint8_t **out, size_t *len);
int nt_ras_record_str(const struct nt_ras_record *r, const char *field, const char **out);

typedef void (*nt_ras_record_fn)(const struct nt_ras_record *r, void *userdata);

/* What could not be decoded. Each is counted, and reported once per kind. */
enum nt_ras_bad {
    NT_RAS_BAD_UNKNOWN_ID,   /* common_type of no enabled event */
    NT_RAS_BAD_TRUNCATED,    /* an entry shorter than its format, or past commit */
    NT_RAS_BAD_HEADER,       /* an impossible event header or page commit */
    NT_RAS_BAD_FIELD,        /* a consumer could not read a field it needs */
    NT_RAS_BAD_LOST,         /* the kernel dropped events: the buffer was full */
    NT_RAS_BAD_MAX,
};
const char *nt_ras_bad_to_string(enum nt_ras_bad kind);

/* Called on the first occurrence of each kind; without one, a warning is logged. */
typedef void (*nt_ras_bad_fn)(enum nt_ras_bad kind, const char *detail, void *userdata);

/* ---- the instance ----------------------------------------------------------- */

struct nt_ras_trace;

/* The events enabled where present, in this order. */
extern const char *const nt_ras_trace_wanted[];
extern const size_t nt_ras_trace_n_wanted;

/* Create (or reuse) instances/numatier under ROOT/sys/kernel/tracing, or
 * ROOT/sys/kernel/debug/tracing; ROOT NULL or "/" is the real system. Sets
 * buffer_percent to 0 (poll wakes on any data, not at the default 50%),
 * enables the wanted events that exist and opens a non-blocking reader per
 * online CPU. Never writes to the top-level instance. Absent events are
 * skipped; having none is not an error (check nt_ras_trace_n_events).
 * -ENOENT no tracefs, else negative errno. */
int nt_ras_trace_open(const char *root, struct nt_ras_trace **out);

/* Disable the instance's events, close the readers and, with remove,
 * rmdir the instance (which fails, harmlessly, while someone holds it). */
void nt_ras_trace_close(struct nt_ras_trace *t, bool remove);

void nt_ras_trace_set_bad_handler(struct nt_ras_trace *t, nt_ras_bad_fn fn, void *userdata);

size_t nt_ras_trace_n_events(const struct nt_ras_trace *t);
/* Does the instance time records on CLOCK_BOOTTIME? numatierd selects
 * "boot" when it makes the instance; a reused one keeps its clock, since
 * changing it would clear what the buffer holds. */
bool nt_ras_trace_boot_clock(const struct nt_ras_trace *t);
/* When rec happened, as wall-clock usec; 0 when the clock is not "boot"
 * (then the caller uses the time it read the record). */
uint64_t nt_ras_trace_record_time_usec(const struct nt_ras_trace *t, const struct nt_ras_record *rec);
/* A CLOCK_BOOTTIME stamp (ns) as wall-clock usec, given both clocks now;
 * a stamp from the future counts as now. */
uint64_t nt_boot_ns_to_realtime_usec(uint64_t ts_ns, uint64_t boot_now_ns, uint64_t real_now_usec);
const struct nt_trace_format *nt_ras_trace_event(const struct nt_ras_trace *t, size_t i);
/* "sys/name" of each wanted event that was absent or could not be enabled. */
size_t nt_ras_trace_n_missing(const struct nt_ras_trace *t);
const char *nt_ras_trace_missing(const struct nt_ras_trace *t, size_t i);
const struct nt_trace_page_layout *nt_ras_trace_layout(const struct nt_ras_trace *t);

struct nt_ras_cpu_reader {
    unsigned cpu;
    int fd;                  /* O_RDONLY|O_NONBLOCK|O_CLOEXEC per_cpu/cpuN/trace_pipe_raw */
};
const struct nt_ras_cpu_reader *nt_ras_trace_readers(const struct nt_ras_trace *t, size_t *n);

/* Re-read the online CPUs: open readers for new ones; drain (through fn,
 * which may be NULL) and close those of CPUs gone. *changed (may be NULL)
 * says whether the fds changed, so the caller re-registers its sources. */
int nt_ras_trace_rescan_cpus(struct nt_ras_trace *t, nt_ras_record_fn fn, void *userdata,
                             bool *changed);

/* Read CPU's pages until none is left (EAGAIN, or EOF on a plain file) or
 * max_pages (0: no limit) were read, calling fn per record. Returns the
 * number of records or negative errno (-ENOENT: no reader for cpu). */
int nt_ras_trace_read(struct nt_ras_trace *t, unsigned cpu, unsigned max_pages,
                      nt_ras_record_fn fn, void *userdata);

/* Decode one page as read from CPU's trace_pipe_raw. Returns the records
 * decoded; bad ones are counted, never fatal. */
int nt_ras_trace_decode_page(struct nt_ras_trace *t, unsigned cpu, const uint8_t *page, size_t len,
                             nt_ras_record_fn fn, void *userdata);

/* Count (and report once per kind) something undecodable; consumers use
 * it with NT_RAS_BAD_FIELD. */
void nt_ras_trace_note_bad(struct nt_ras_trace *t, enum nt_ras_bad kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t nt_ras_trace_bad_count(const struct nt_ras_trace *t, enum nt_ras_bad kind);
/* Events the kernel said it dropped (commit flags, with the stored count). */
uint64_t nt_ras_trace_lost(const struct nt_ras_trace *t);
