/* RAS tracepoints through our own tracefs instance: format parsing,
 * ring-buffer page decoding and the per-CPU trace_pipe_raw readers.
 * See include/numatier/ras-trace.h; kernel layouts are read at run time
 * (events/header_page, events/header_event, each event's format) rather
 * than hard-coded, because they differ across kernels. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "numatier/log.h"
#include "numatier/perf.h"
#include "numatier/ras-trace.h"
#include "numatier/util.h"

const char *const nt_ras_trace_wanted[] = {
    "mce/mce_record",
    "ras/mc_event",
    "ras/memory_failure_event",
    "cxl/cxl_general_media",
    "cxl/cxl_dram",
};
const size_t nt_ras_trace_n_wanted = NT_ARRAY_SIZE(nt_ras_trace_wanted);

#define MAX_EVENTS NT_ARRAY_SIZE(nt_ras_trace_wanted)

/* Flags the kernel keeps above the byte count in a page's commit word
 * (RB_MISSED_EVENTS, RB_MISSED_STORED); libtraceevent masks the count to
 * 27 bits, and so do we. */
#define COMMIT_MISSED_EVENTS (1ULL << 31)
#define COMMIT_MISSED_STORED (1ULL << 30)
#define COMMIT_SIZE_MASK     ((1ULL << 27) - 1)

struct nt_ras_trace {
    char *tracefs;                 /* e.g. /sys/kernel/tracing */
    char *inst;                    /* instances/numatier below it, relative */
    char *root;                    /* for /sys/devices/system/cpu/online */
    struct nt_trace_page_layout layout;
    struct nt_trace_format events[MAX_EVENTS];
    size_t n_events;
    char *missing[MAX_EVENTS];
    size_t n_missing;
    struct nt_ras_cpu_reader *readers;
    size_t n_readers;
    uint8_t *page;                 /* one read of trace_pipe_raw */
    uint64_t bad[NT_RAS_BAD_MAX];
    uint64_t lost;
    bool boot_clock;               /* the instance runs on the "boot" trace clock */
    nt_ras_bad_fn bad_fn;
    void *bad_userdata;
};

/* ---- format files ---------------------------------------------------------- */

static char *strndup_trim(const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

static bool field_attr(const char *rest, const char *key, unsigned *out)
{
    const char *p = strstr(rest, key);
    if (!p)
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p + strlen(key), &end, 10);
    if (errno || end == p + strlen(key) || v > UINT32_MAX)
        return false;
    *out = (unsigned)v;
    return true;
}

static enum nt_trace_field_kind field_kind(const struct nt_trace_field *f)
{
    if (strncmp(f->type, "__data_loc", 10) == 0)
        return NT_TRACE_FIELD_DATA_LOC;
    if (strncmp(f->type, "__rel_loc", 9) == 0)
        return NT_TRACE_FIELD_REL_LOC;
    if (f->elems || (f->size != 1 && f->size != 2 && f->size != 4 && f->size != 8))
        return NT_TRACE_FIELD_BYTES;
    return NT_TRACE_FIELD_SCALAR;
}

static void field_done(struct nt_trace_field *f)
{
    free(f->type);
    free(f->name);
    *f = (struct nt_trace_field){0};
}

/* "\tfield:u8 comp_id[16];\toffset:88;\tsize:16;\tsigned:0;" */
static int parse_field_line(const char *line, struct nt_trace_field *f)
{
    const char *p = strstr(line, "field:");
    if (!p)
        return -EINVAL;
    p += 6;
    const char *semi = strchr(p, ';');
    if (!semi)
        return -EINVAL;
    const char *name_end = semi;
    while (name_end > p && isspace((unsigned char)name_end[-1]))
        name_end--;
    const char *name = name_end;
    while (name > p && !isspace((unsigned char)name[-1]))
        name--;
    if (name == name_end || name == p)
        return -EINVAL;

    *f = (struct nt_trace_field){0};
    const char *bracket = memchr(name, '[', (size_t)(name_end - name));
    if (bracket)
        f->elems = (unsigned)strtoul(bracket + 1, NULL, 10);
    f->name = strndup(name, (size_t)((bracket ? bracket : name_end) - name));
    f->type = strndup_trim(p, (size_t)(name - p));
    unsigned sgn = 0;
    if (!f->name || !f->type || !field_attr(semi, "offset:", &f->offset) ||
        !field_attr(semi, "size:", &f->size) || f->size == 0) {
        field_done(f);
        return -EINVAL;
    }
    field_attr(semi, "signed:", &sgn);     /* absent before 2.6.33: unsigned */
    f->is_signed = sgn != 0;
    f->kind = field_kind(f);
    return 0;
}

static int format_add_field(struct nt_trace_format *out, const char *line)
{
    struct nt_trace_field f;
    int r = parse_field_line(line, &f);
    if (r < 0)
        return r;
    struct nt_trace_field *nf = realloc(out->fields, (out->n_fields + 1) * sizeof(*nf));
    if (!nf) {
        field_done(&f);
        return -ENOMEM;
    }
    out->fields = nf;
    out->fields[out->n_fields++] = f;
    if (f.offset + f.size > out->min_size)
        out->min_size = f.offset + f.size;
    return 0;
}

static int format_line(struct nt_trace_format *out, const char *line, bool *have_id)
{
    while (isspace((unsigned char)*line))
        line++;
    if (strncmp(line, "name:", 5) == 0) {
        free(out->name);
        out->name = strndup_trim(line + 5, strlen(line + 5));
        return out->name ? 0 : -ENOMEM;
    }
    if (strncmp(line, "ID:", 3) == 0) {
        char *end;
        errno = 0;
        unsigned long id = strtoul(line + 3, &end, 10);
        if (errno || end == line + 3 || id > UINT16_MAX)
            return -EINVAL;
        out->id = (unsigned)id;
        *have_id = true;
        return 0;
    }
    if (strncmp(line, "field:", 6) == 0)
        return format_add_field(out, line);
    return 0;                              /* "format:", blank, "print fmt:" */
}

int nt_trace_format_parse(const char *system, const char *text, struct nt_trace_format *out)
{
    *out = (struct nt_trace_format){0};
    bool have_id = false;
    int r = 0;
    out->system = strdup(system ? system : "");
    if (!out->system)
        r = -ENOMEM;
    for (const char *p = text; r == 0 && p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, "print fmt:", 10) == 0)
            break;
        char *line = strndup(p, n);
        r = line ? format_line(out, line, &have_id) : -ENOMEM;
        free(line);
        p = nl ? nl + 1 : NULL;
    }
    if (r == 0 && (!out->name || !*out->name || !have_id || !nt_trace_format_field(out, "common_type")))
        r = -EINVAL;
    if (r < 0)
        nt_trace_format_done(out);
    return r;
}

void nt_trace_format_done(struct nt_trace_format *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_fields; i++)
        field_done(&f->fields[i]);
    free(f->fields);
    free(f->system);
    free(f->name);
    *f = (struct nt_trace_format){0};
}

const struct nt_trace_field *nt_trace_format_field(const struct nt_trace_format *f, const char *name)
{
    for (size_t i = 0; i < f->n_fields; i++)
        if (strcmp(f->fields[i].name, name) == 0)
            return &f->fields[i];
    return NULL;
}

/* ---- header_page and header_event -------------------------------------------- */

static int header_page_line(const char *line, struct nt_trace_page_layout *l, unsigned *seen)
{
    struct nt_trace_field f;
    if (!strstr(line, "field:"))
        return 0;
    int r = parse_field_line(line, &f);
    if (r < 0)
        return r;
    if (strcmp(f.name, "timestamp") == 0 && f.size == 8) {
        l->ts_offset = f.offset, l->ts_size = f.size, *seen |= 1;
    } else if (strcmp(f.name, "commit") == 0 && (f.size == 4 || f.size == 8)) {
        l->commit_offset = f.offset, l->commit_size = f.size, *seen |= 2;
    } else if (strcmp(f.name, "data") == 0) {
        l->data_offset = f.offset, l->page_size = (size_t)f.offset + f.size, *seen |= 4;
    }
    field_done(&f);
    return 0;
}

/* The last number on the line: "type_len : 5 bits", "padding : type == 29". */
static bool last_number(const char *line, unsigned *out)
{
    const char *end = line + strlen(line);
    while (end > line && !isdigit((unsigned char)end[-1]))
        end--;
    const char *start = end;
    while (start > line && isdigit((unsigned char)start[-1]))
        start--;
    if (start == end)
        return false;
    *out = (unsigned)strtoul(start, NULL, 10);
    return true;
}

static void header_event_line(const char *line, struct nt_trace_page_layout *l)
{
    static const struct { const char *key; size_t off; } keys[] = {
        { "type_len", offsetof(struct nt_trace_page_layout, type_len_bits) },
        { "time_delta", offsetof(struct nt_trace_page_layout, delta_bits) },
        { "padding", offsetof(struct nt_trace_page_layout, type_padding) },
        { "time_extend", offsetof(struct nt_trace_page_layout, type_extend) },
        { "time_stamp", offsetof(struct nt_trace_page_layout, type_stamp) },
        { "data max type_len", offsetof(struct nt_trace_page_layout, max_data_type_len) },
    };
    while (isspace((unsigned char)*line))
        line++;
    for (size_t i = 0; i < NT_ARRAY_SIZE(keys); i++) {
        size_t kl = strlen(keys[i].key);
        unsigned v;
        if (strncmp(line, keys[i].key, kl) == 0 && (isspace((unsigned char)line[kl]) || line[kl] == ':') &&
            last_number(line, &v))
            *(unsigned *)((char *)l + keys[i].off) = v;
    }
}

static void for_each_line(const char *text, void (*fn)(const char *line, void *ud), void *ud)
{
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, n);
        if (line)
            fn(line, ud);
        free(line);
        p = nl ? nl + 1 : NULL;
    }
}

struct hp_ctx { struct nt_trace_page_layout *l; unsigned seen; int r; };

static void hp_line(const char *line, void *ud)
{
    struct hp_ctx *c = ud;
    if (c->r == 0)
        c->r = header_page_line(line, c->l, &c->seen);
}

static void he_line(const char *line, void *ud)
{
    header_event_line(line, ud);
}

static bool layout_sane(const struct nt_trace_page_layout *l)
{
    unsigned types = 1u << l->type_len_bits;
    return l->type_len_bits + l->delta_bits == 32 && l->type_len_bits < 8 &&
           l->max_data_type_len < l->type_padding && l->type_padding < types &&
           l->type_extend < types && l->type_stamp < types &&
           l->data_offset >= l->commit_offset + l->commit_size && l->page_size > l->data_offset;
}

int nt_trace_page_layout_parse(const char *header_page, const char *header_event,
                               struct nt_trace_page_layout *out)
{
    *out = (struct nt_trace_page_layout){
        .type_len_bits = 5, .delta_bits = 27,
        .type_padding = 29, .type_extend = 30, .type_stamp = 31, .max_data_type_len = 28,
    };
    struct hp_ctx c = { .l = out };
    for_each_line(header_page, hp_line, &c);
    if (c.r < 0)
        return c.r;
    if (c.seen != 7)
        return -EINVAL;
    if (header_event)
        for_each_line(header_event, he_line, out);
    return layout_sane(out) ? 0 : -EINVAL;
}

/* ---- records ------------------------------------------------------------------- */

static uint64_t read_uint(const uint8_t *p, unsigned size)
{
    switch (size) {
    case 1: return *p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

static int record_field(const struct nt_ras_record *r, const char *name, const struct nt_trace_field **out)
{
    const struct nt_trace_field *f = nt_trace_format_field(r->fmt, name);
    if (!f)
        return -ENOENT;
    if ((size_t)f->offset + f->size > r->len)
        return -EBADMSG;
    *out = f;
    return 0;
}

/* A scalar field's raw bits, and the field. */
static int read_scalar(const struct nt_ras_record *r, const char *name, const struct nt_trace_field **f,
                       uint64_t *v)
{
    int e = record_field(r, name, f);
    if (e < 0)
        return e;
    if ((*f)->kind != NT_TRACE_FIELD_SCALAR)
        return -EINVAL;
    *v = read_uint(r->data + (*f)->offset, (*f)->size);
    return 0;
}

int nt_ras_record_u64(const struct nt_ras_record *r, const char *field, uint64_t *out)
{
    const struct nt_trace_field *f;
    return read_scalar(r, field, &f, out);
}

int nt_ras_record_s64(const struct nt_ras_record *r, const char *field, int64_t *out)
{
    const struct nt_trace_field *f;
    uint64_t v;
    int e = read_scalar(r, field, &f, &v);
    if (e < 0)
        return e;
    unsigned bits = f->size * 8;
    if (f->is_signed && bits < 64 && (v >> (bits - 1)) & 1)
        v |= ~0ULL << bits;
    *out = (int64_t)v;
    return 0;
}

int nt_ras_record_bytes(const struct nt_ras_record *r, const char *field, const uint8_t **out, size_t *len)
{
    const struct nt_trace_field *f;
    int e = record_field(r, field, &f);
    if (e < 0)
        return e;
    if (f->kind != NT_TRACE_FIELD_DATA_LOC && f->kind != NT_TRACE_FIELD_REL_LOC) {
        *out = r->data + f->offset;
        *len = f->size;
        return 0;
    }
    /* The u32 holds length << 16 | offset; __rel_loc counts from the field's end. */
    uint32_t loc = (uint32_t)read_uint(r->data + f->offset, f->size >= 4 ? 4 : f->size);
    size_t off = loc & 0xffff, n = loc >> 16;
    if (f->kind == NT_TRACE_FIELD_REL_LOC)
        off += (size_t)f->offset + f->size;
    if (off + n > r->len)
        return -EBADMSG;
    *out = r->data + off;
    *len = n;
    return 0;
}

int nt_ras_record_str(const struct nt_ras_record *r, const char *field, const char **out)
{
    const struct nt_trace_field *f = nt_trace_format_field(r->fmt, field);
    if (f && f->kind != NT_TRACE_FIELD_DATA_LOC && f->kind != NT_TRACE_FIELD_REL_LOC)
        return -EINVAL;
    const uint8_t *p;
    size_t n;
    int e = nt_ras_record_bytes(r, field, &p, &n);
    if (e < 0)
        return e;
    if (n == 0) {
        *out = "";
        return 0;
    }
    if (!memchr(p, '\0', n))
        return -EBADMSG;
    *out = (const char *)p;
    return 0;
}

/* ---- bad-event accounting ------------------------------------------------------ */

const char *nt_ras_bad_to_string(enum nt_ras_bad kind)
{
    static const char *const names[NT_RAS_BAD_MAX] = {
        [NT_RAS_BAD_UNKNOWN_ID] = "unknown event id",
        [NT_RAS_BAD_TRUNCATED] = "truncated event",
        [NT_RAS_BAD_HEADER] = "corrupt ring-buffer page",
        [NT_RAS_BAD_FIELD] = "missing or unreadable field",
        [NT_RAS_BAD_LOST] = "events lost",
    };
    return (unsigned)kind < NT_RAS_BAD_MAX ? names[kind] : "?";
}

void nt_ras_trace_note_bad(struct nt_ras_trace *t, enum nt_ras_bad kind, const char *fmt, ...)
{
    if ((unsigned)kind >= NT_RAS_BAD_MAX)
        return;
    if (t->bad[kind]++ > 0)
        return;                    /* counted; only the first of a kind is told */
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (t->bad_fn)
        t->bad_fn(kind, detail, t->bad_userdata);
    else
        log_warning("ras-trace: %s: %s (further ones only counted)", nt_ras_bad_to_string(kind), detail);
}

uint64_t nt_ras_trace_bad_count(const struct nt_ras_trace *t, enum nt_ras_bad kind)
{
    return (unsigned)kind < NT_RAS_BAD_MAX ? t->bad[kind] : 0;
}

uint64_t nt_ras_trace_lost(const struct nt_ras_trace *t)
{
    return t->lost;
}

void nt_ras_trace_set_bad_handler(struct nt_ras_trace *t, nt_ras_bad_fn fn, void *userdata)
{
    t->bad_fn = fn;
    t->bad_userdata = userdata;
}

/* ---- page decoding --------------------------------------------------------------- */

struct page_walk {
    struct nt_ras_trace *t;
    unsigned cpu;
    const uint8_t *data;           /* the page's data[] */
    size_t size;                   /* committed bytes of it */
    size_t off;
    uint64_t ts;
    int records;
    nt_ras_record_fn fn;
    void *userdata;
};

static const struct nt_trace_format *event_by_id(const struct nt_ras_trace *t, unsigned id)
{
    for (size_t i = 0; i < t->n_events; i++)
        if (t->events[i].id == id)
            return &t->events[i];
    return NULL;
}

static void emit(struct page_walk *w, const uint8_t *entry, size_t len)
{
    struct nt_ras_trace *t = w->t;
    /* Every event starts with the same common_type field. */
    const struct nt_trace_field *ct = t->n_events ? nt_trace_format_field(&t->events[0], "common_type") : NULL;
    if (!ct) {
        nt_ras_trace_note_bad(t, NT_RAS_BAD_UNKNOWN_ID, "cpu %u: an event while none is enabled", w->cpu);
        return;
    }
    if ((size_t)ct->offset + ct->size > len) {
        nt_ras_trace_note_bad(t, NT_RAS_BAD_TRUNCATED, "cpu %u: a %zu-byte entry without common_type",
                              w->cpu, len);
        return;
    }
    unsigned id = (unsigned)read_uint(entry + ct->offset, ct->size);
    const struct nt_trace_format *fmt = event_by_id(t, id);
    if (!fmt) {
        nt_ras_trace_note_bad(t, NT_RAS_BAD_UNKNOWN_ID, "cpu %u: event id %u", w->cpu, id);
        return;
    }
    if (len < fmt->min_size) {
        nt_ras_trace_note_bad(t, NT_RAS_BAD_TRUNCATED, "cpu %u: %s/%s of %zu bytes, format needs %u",
                              w->cpu, fmt->system, fmt->name, len, fmt->min_size);
        return;
    }
    struct nt_ras_record rec = { .fmt = fmt, .cpu = w->cpu, .ts = w->ts, .data = entry, .len = len };
    w->records++;
    if (w->fn)
        w->fn(&rec, w->userdata);
}

/* The kernel keeps 59 bits of an absolute stamp and takes the top ones from
 * the running clock (rb_fix_abs_ts). */
static uint64_t fix_abs_ts(uint64_t abs, uint64_t prev, unsigned bits)
{
    uint64_t msb = ~0ULL << bits;
    if (prev & msb) {
        abs |= prev & msb;
        if (abs < prev)
            abs += 1ULL << bits;
    }
    return abs;
}

/* One event at w->off. Returns false at the end of the page's data. */
static bool walk_one(struct page_walk *w)
{
    const struct nt_trace_page_layout *l = &w->t->layout;
    size_t left = w->size - w->off;
    const uint8_t *p = w->data + w->off;
    if (left < 4) {
        nt_ras_trace_note_bad(w->t, NT_RAS_BAD_TRUNCATED, "cpu %u: %zu stray bytes at the end of a page",
                              w->cpu, left);
        return false;
    }
    uint32_t hdr = (uint32_t)read_uint(p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    unsigned type_len = hdr >> l->delta_bits;
    uint64_t delta = hdr & ((1u << l->delta_bits) - 1);
#else
    unsigned type_len = hdr & ((1u << l->type_len_bits) - 1);
    uint64_t delta = hdr >> l->type_len_bits;
#endif
    uint32_t array0 = left >= 8 ? (uint32_t)read_uint(p + 4, 4) : 0;
    bool small = type_len >= 1 && type_len <= l->max_data_type_len;

    if (type_len == l->type_padding && delta == 0)
        return false;              /* the rest of the page is padding */
    if (!small && left < 8) {
        nt_ras_trace_note_bad(w->t, NT_RAS_BAD_TRUNCATED, "cpu %u: event header cut at the page end", w->cpu);
        return false;
    }
    size_t total;
    if (type_len == l->type_padding) {
        /* A discarded event: array[0] is its length after the header. As
         * the kernel's reader does, it does not move the clock. */
        total = 4 + (size_t)array0;
    } else if (type_len == l->type_extend) {
        w->ts += ((uint64_t)array0 << l->delta_bits) + delta;
        total = 8;
    } else if (type_len == l->type_stamp) {
        w->ts = fix_abs_ts(((uint64_t)array0 << l->delta_bits) | delta, w->ts, 32 + l->delta_bits);
        total = 8;
    } else if (type_len == 0 || small) {
        size_t hdr_len = type_len ? 4 : 8;
        size_t len = type_len ? (size_t)type_len * 4 : (size_t)array0;
        if (type_len == 0) {
            if (len < 4)
                goto corrupt;
            len = ((len - 4) + 3) & ~(size_t)3;   /* array[0] counts itself */
        }
        total = hdr_len + len;
        if (total > left) {
            nt_ras_trace_note_bad(w->t, NT_RAS_BAD_TRUNCATED, "cpu %u: a %zu-byte event runs past commit",
                                  w->cpu, total);
            return false;
        }
        w->ts += delta;
        emit(w, p + hdr_len, len);
    } else {
        goto corrupt;
    }
    if (total < 8 && type_len == l->type_padding)
        goto corrupt;
    if (total > left)
        goto corrupt;
    w->off += total;
    return true;
corrupt:
    nt_ras_trace_note_bad(w->t, NT_RAS_BAD_HEADER, "cpu %u: event header %#x at data offset %zu",
                          w->cpu, hdr, w->off);
    return false;
}

/* Lost events: the kernel flags the page and may store the count after
 * the data. Returns the committed size, or -1 for a corrupt page. */
static long page_commit(struct nt_ras_trace *t, unsigned cpu, const uint8_t *page, size_t len)
{
    const struct nt_trace_page_layout *l = &t->layout;
    uint64_t commit = read_uint(page + l->commit_offset, l->commit_size);
    size_t size = (size_t)(commit & COMMIT_SIZE_MASK);
    if (size > l->page_size - l->data_offset) {
        nt_ras_trace_note_bad(t, NT_RAS_BAD_HEADER, "cpu %u: page commit %zu beyond the page", cpu, size);
        return -1;
    }
    if (commit & COMMIT_MISSED_EVENTS) {
        uint64_t n = 0;
        size_t at = l->data_offset + size;
        if ((commit & COMMIT_MISSED_STORED) && at + l->commit_size <= len)
            n = read_uint(page + at, l->commit_size);
        t->lost += n;
        if (n)
            nt_ras_trace_note_bad(t, NT_RAS_BAD_LOST, "cpu %u: %" PRIu64 " events lost before this page", cpu, n);
        else
            nt_ras_trace_note_bad(t, NT_RAS_BAD_LOST, "cpu %u: events lost before this page", cpu);
    }
    return (long)(size < len - l->data_offset ? size : len - l->data_offset);
}

int nt_ras_trace_decode_page(struct nt_ras_trace *t, unsigned cpu, const uint8_t *page, size_t len,
                             nt_ras_record_fn fn, void *userdata)
{
    const struct nt_trace_page_layout *l = &t->layout;
    if (len < l->data_offset) {
        nt_ras_trace_note_bad(t, NT_RAS_BAD_HEADER, "cpu %u: a read of %zu bytes, shorter than a page header",
                              cpu, len);
        return 0;
    }
    long size = page_commit(t, cpu, page, len);
    if (size < 0)
        return 0;
    struct page_walk w = {
        .t = t, .cpu = cpu, .data = page + l->data_offset, .size = (size_t)size,
        .ts = read_uint(page + l->ts_offset, l->ts_size), .fn = fn, .userdata = userdata,
    };
    while (w.off < w.size && walk_one(&w))
        ;
    return w.records;
}

/* ---- the instance ---------------------------------------------------------------- */


static bool is_dir(const char *root, const char *path)
{
    _cleanup_free_ char *full = nt_path_join(root, path);
    struct stat st;
    return full && stat(full, &st) == 0 && S_ISDIR(st.st_mode);
}

/* tracefs where it is mounted today, else where debugfs used to show it. */
static int find_tracefs(const char *root, char **out)
{
    static const char *const where[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
    for (size_t i = 0; i < NT_ARRAY_SIZE(where); i++) {
        _cleanup_free_ char *p = nt_path_join(root, where[i]);
        if (!p)
            return -ENOMEM;
        if (is_dir(p, "/instances")) {
            *out = NT_TAKE_PTR(p);
            return 0;
        }
    }
    return -ENOENT;
}

static int add_missing(struct nt_ras_trace *t, const char *ev)
{
    t->missing[t->n_missing] = strdup(ev);
    if (!t->missing[t->n_missing])
        return -ENOMEM;
    t->n_missing++;
    return 0;
}

/* Parse and enable one event; an absent or unusable one goes to missing. */
static int enable_event(struct nt_ras_trace *t, const char *ev)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "%s/events/%s/format", t->inst, ev);
    _cleanup_free_ char *text = NULL;
    int r = nt_read_file(t->tracefs, rel, &text);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return add_missing(t, ev);

    char sys[64];
    snprintf(sys, sizeof(sys), "%.*s", (int)(strchr(ev, '/') - ev), ev);
    struct nt_trace_format *f = &t->events[t->n_events];
    r = nt_trace_format_parse(sys, text, f);
    if (r < 0) {
        log_warning("ras-trace: cannot parse the format of %s: %s", ev, strerror(-r));
        return r == -ENOMEM ? r : add_missing(t, ev);
    }
    snprintf(rel, sizeof(rel), "%s/events/%s/enable", t->inst, ev);
    r = nt_write_file(t->tracefs, rel, "1");
    if (r < 0) {
        log_warning("ras-trace: cannot enable %s: %s", ev, strerror(-r));
        nt_trace_format_done(f);
        return add_missing(t, ev);
    }
    t->n_events++;
    return 0;
}

static int read_layout(struct nt_ras_trace *t)
{
    char rel[256];
    _cleanup_free_ char *page = NULL, *event = NULL;
    snprintf(rel, sizeof(rel), "%s/events/header_page", t->inst);
    int r = nt_read_file(t->tracefs, rel, &page);
    if (r < 0)
        return r;
    snprintf(rel, sizeof(rel), "%s/events/header_event", t->inst);
    if (nt_read_file(t->tracefs, rel, &event) < 0)
        event = NULL;              /* the defaults are what every kernel has */
    r = nt_trace_page_layout_parse(page, event, &t->layout);
    if (r < 0)
        return r;
    t->page = malloc(t->layout.page_size);
    return t->page ? 0 : -ENOMEM;
}

/* The selected clock in a trace_clock file: the bracketed word ("local
 * global [boot]"), or the only word. */
static bool clock_selected(const char *text, const char *name)
{
    char want[32];
    snprintf(want, sizeof(want), "[%s]", name);
    if (strstr(text, want))
        return true;
    size_t n = strlen(name);
    return strncmp(text, name, n) == 0 && (text[n] == '\0' || isspace((unsigned char)text[n])) &&
           !strchr(text, '[');
}

/* Record times on CLOCK_BOOTTIME, so each event gets the time it happened,
 * not the time it was read (they differ in a storm, and for what a ring
 * buffer held while numatierd was down). Changing the clock clears the
 * buffer, so a reused instance keeps whatever clock it has. */
static void choose_clock(struct nt_ras_trace *t, bool fresh)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "%s/trace_clock", t->inst);
    _cleanup_free_ char *text = NULL;
    if (nt_read_file(t->tracefs, rel, &text) < 0)
        return;
    if (!clock_selected(text, "boot") && fresh && nt_write_file(t->tracefs, rel, "boot") == 0) {
        free(text);
        text = NULL;
        if (nt_read_file(t->tracefs, rel, &text) < 0)
            return;
    }
    t->boot_clock = clock_selected(text, "boot");
    if (!t->boot_clock)
        log_info("ras-trace: trace clock is not \"boot\"; events are timed when read");
}

static int make_instance(struct nt_ras_trace *t)
{
    _cleanup_free_ char *path = nt_path_join(t->tracefs, t->inst);
    if (!path)
        return -ENOMEM;
    /* EEXIST: our own, left by a daemon that died; reuse it. */
    bool fresh = mkdir(path, 0750) == 0;
    if (!fresh && errno != EEXIST)
        return -errno;
    choose_clock(t, fresh);
    char rel[128];
    snprintf(rel, sizeof(rel), "%s/buffer_percent", t->inst);
    /* Poll on trace_pipe_raw waits for buffer_percent (default 50) of the
     * buffer to fill; we want each corrected error as it comes. */
    int r = nt_write_file(t->tracefs, rel, "0");
    if (r < 0 && r != -ENOENT)
        log_warning("ras-trace: cannot set buffer_percent: %s; events may arrive late", strerror(-r));
    return 0;
}

int nt_ras_trace_open(const char *root, struct nt_ras_trace **out)
{
    struct nt_ras_trace *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    int r = find_tracefs(root, &t->tracefs);
    if (r == 0 && (!(t->inst = strdup("/instances/" NT_RAS_TRACE_INSTANCE)) ||
                   !(t->root = strdup(root ? root : "/"))))
        r = -ENOMEM;
    if (r == 0)
        r = make_instance(t);
    if (r == 0)
        r = read_layout(t);
    for (size_t i = 0; r == 0 && i < nt_ras_trace_n_wanted; i++)
        r = enable_event(t, nt_ras_trace_wanted[i]);
    if (r == 0)
        r = nt_ras_trace_rescan_cpus(t, NULL, NULL, NULL);
    if (r < 0) {
        nt_ras_trace_close(t, false);
        return r;
    }
    *out = t;
    return 0;
}

static void close_readers(struct nt_ras_trace *t)
{
    for (size_t i = 0; i < t->n_readers; i++)
        if (t->readers[i].fd >= 0)
            close(t->readers[i].fd);
    free(t->readers);
    t->readers = NULL;
    t->n_readers = 0;
}

void nt_ras_trace_close(struct nt_ras_trace *t, bool remove)
{
    if (!t)
        return;
    close_readers(t);
    for (size_t i = 0; i < t->n_events; i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "%s/events/%s/%s/enable", t->inst, t->events[i].system, t->events[i].name);
        int r = nt_write_file(t->tracefs, rel, "0");
        if (r < 0)
            log_warning("ras-trace: cannot disable %s/%s: %s", t->events[i].system, t->events[i].name,
                        strerror(-r));
        nt_trace_format_done(&t->events[i]);
    }
    if (remove && t->tracefs && t->inst) {
        _cleanup_free_ char *path = nt_path_join(t->tracefs, t->inst);
        if (path && rmdir(path) < 0 && errno != ENOENT)
            log_debug("ras-trace: instance kept: %s", strerror(errno));
    }
    for (size_t i = 0; i < t->n_missing; i++)
        free(t->missing[i]);
    free(t->page);
    free(t->tracefs);
    free(t->inst);
    free(t->root);
    free(t);
}

uint64_t nt_boot_ns_to_realtime_usec(uint64_t ts_ns, uint64_t boot_now_ns, uint64_t real_now_usec)
{
    uint64_t ago_usec = boot_now_ns > ts_ns ? (boot_now_ns - ts_ns) / 1000 : 0;
    return ago_usec < real_now_usec ? real_now_usec - ago_usec : 0;
}

uint64_t nt_ras_trace_record_time_usec(const struct nt_ras_trace *t, const struct nt_ras_record *rec)
{
    struct timespec boot;
    if (!t || !t->boot_clock || clock_gettime(CLOCK_BOOTTIME, &boot) < 0)
        return 0;
    uint64_t boot_ns = (uint64_t)boot.tv_sec * 1000000000u + (uint64_t)boot.tv_nsec;
    return nt_boot_ns_to_realtime_usec(rec->ts, boot_ns, nt_realtime_usec());
}

bool nt_ras_trace_boot_clock(const struct nt_ras_trace *t) { return t->boot_clock; }

size_t nt_ras_trace_n_events(const struct nt_ras_trace *t) { return t->n_events; }

const struct nt_trace_format *nt_ras_trace_event(const struct nt_ras_trace *t, size_t i)
{
    return i < t->n_events ? &t->events[i] : NULL;
}

size_t nt_ras_trace_n_missing(const struct nt_ras_trace *t) { return t->n_missing; }

const char *nt_ras_trace_missing(const struct nt_ras_trace *t, size_t i)
{
    return i < t->n_missing ? t->missing[i] : NULL;
}

const struct nt_trace_page_layout *nt_ras_trace_layout(const struct nt_ras_trace *t) { return &t->layout; }

const struct nt_ras_cpu_reader *nt_ras_trace_readers(const struct nt_ras_trace *t, size_t *n)
{
    *n = t->n_readers;
    return t->readers;
}

/* ---- per-CPU readers --------------------------------------------------------------- */

static struct nt_ras_cpu_reader *reader_of(struct nt_ras_trace *t, unsigned cpu)
{
    for (size_t i = 0; i < t->n_readers; i++)
        if (t->readers[i].cpu == cpu)
            return &t->readers[i];
    return NULL;
}

static int open_reader(struct nt_ras_trace *t, unsigned cpu)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "%s/per_cpu/cpu%u/trace_pipe_raw", t->inst, cpu);
    _cleanup_free_ char *path = nt_path_join(t->tracefs, rel);
    if (!path)
        return -ENOMEM;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static bool cpu_listed(const int *cpus, size_t n, unsigned cpu)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned)cpus[i] == cpu)
            return true;
    return false;
}

/* Keep the readers of CPUs still online; drain and close the others. */
static size_t drop_gone(struct nt_ras_trace *t, const int *cpus, size_t n, nt_ras_record_fn fn, void *ud)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < t->n_readers; i++) {
        struct nt_ras_cpu_reader rd = t->readers[i];
        if (cpu_listed(cpus, n, rd.cpu)) {
            t->readers[kept++] = rd;
            continue;
        }
        nt_ras_trace_read(t, rd.cpu, 0, fn, ud);   /* what it logged before going */
        close(rd.fd);
        dropped++;
    }
    t->n_readers = kept;
    return dropped;
}

int nt_ras_trace_rescan_cpus(struct nt_ras_trace *t, nt_ras_record_fn fn, void *userdata, bool *changed)
{
    _cleanup_free_ char *online = NULL;
    _cleanup_free_ int *cpus = NULL;
    size_t n = 0;
    int r = nt_read_file(t->root, "/sys/devices/system/cpu/online", &online);
    if (r < 0)
        return r;
    r = nt_perf_cpulist_parse(online, &cpus, &n);
    if (r < 0)
        return r;
    size_t dropped = drop_gone(t, cpus, n, fn, userdata), added = 0;
    struct nt_ras_cpu_reader *nr = realloc(t->readers, (n ? n : 1) * sizeof(*nr));
    if (!nr)
        return -ENOMEM;
    t->readers = nr;
    for (size_t i = 0; i < n; i++) {
        if (reader_of(t, (unsigned)cpus[i]))
            continue;
        int fd = open_reader(t, (unsigned)cpus[i]);
        if (fd < 0) {
            log_warning("ras-trace: no reader for cpu %d: %s", cpus[i], strerror(-fd));
            continue;
        }
        t->readers[t->n_readers++] = (struct nt_ras_cpu_reader){ .cpu = (unsigned)cpus[i], .fd = fd };
        added++;
    }
    if (changed)
        *changed = added || dropped;
    return 0;
}

int nt_ras_trace_read(struct nt_ras_trace *t, unsigned cpu, unsigned max_pages,
                      nt_ras_record_fn fn, void *userdata)
{
    struct nt_ras_cpu_reader *rd = reader_of(t, cpu);
    if (!rd)
        return -ENOENT;
    int records = 0;
    for (unsigned pages = 0; max_pages == 0 || pages < max_pages; pages++) {
        ssize_t n = read(rd->fd, t->page, t->layout.page_size);
        if (n < 0 && errno == EINTR) {
            pages--;
            continue;
        }
        if (n < 0)
            return errno == EAGAIN ? records : -errno;
        if (n == 0)
            break;                 /* a plain file (tests) at its end */
        records += nt_ras_trace_decode_page(t, cpu, t->page, (size_t)n, fn, userdata);
    }
    return records;
}
