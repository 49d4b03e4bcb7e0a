/* Reading a perf ring buffer and decoding PERF_RECORD_SAMPLE.
 *
 * Works on any memory shaped like a perf mmap (header page + power-of-two
 * data area), so the tests feed it synthesized records. The kernel is the
 * producer: we acquire-load data_head, read records up to it, and
 * release-store data_tail so the kernel may reuse the space. The ring is
 * shared with a less trusted writer (and tests throw garbage at it), so
 * every size is checked before use and bad framing skips to data_head:
 * never a crash, never a loop that does not advance. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "numatier/perf.h"

_Static_assert(8 + 17 * 8 <= NT_PERF_BOUNCE_SIZE, "bounce buffer holds the largest sample");

/* Field order of PERF_RECORD_SAMPLE (perf_output_sample() in the kernel).
 * WEIGHT and WEIGHT_STRUCT share one slot; only one may be set. */
static const uint64_t sample_order[] = {
    PERF_SAMPLE_IDENTIFIER, PERF_SAMPLE_IP, PERF_SAMPLE_TID, PERF_SAMPLE_TIME,
    PERF_SAMPLE_ADDR, PERF_SAMPLE_ID, PERF_SAMPLE_STREAM_ID, PERF_SAMPLE_CPU,
    PERF_SAMPLE_PERIOD, PERF_SAMPLE_WEIGHT | PERF_SAMPLE_WEIGHT_STRUCT,
    PERF_SAMPLE_DATA_SRC, PERF_SAMPLE_TRANSACTION, PERF_SAMPLE_PHYS_ADDR,
    PERF_SAMPLE_CGROUP, PERF_SAMPLE_DATA_PAGE_SIZE, PERF_SAMPLE_CODE_PAGE_SIZE,
};

static uint64_t load_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));       /* records may sit at any offset */
    return v;
}

int nt_perf_sample_size(uint64_t t)
{
    if (t & ~(uint64_t)NT_PERF_SAMPLE_DECODABLE)
        return -EOPNOTSUPP;
    if ((t & PERF_SAMPLE_WEIGHT) && (t & PERF_SAMPLE_WEIGHT_STRUCT))
        return -EINVAL;
    return 8 * __builtin_popcountll(t);
}

/* One u64 slot into its field. The u32 pairs and the weight struct are
 * read as little-endian halves, which is what x86 and arm64 write. */
static void store_field(struct nt_perf_sample *s, uint64_t bit, uint64_t v)
{
    switch (bit) {
    case PERF_SAMPLE_IDENTIFIER:
    case PERF_SAMPLE_ID:          s->id = v; break;
    case PERF_SAMPLE_IP:          s->ip = v; break;
    case PERF_SAMPLE_TID:         s->pid = (uint32_t)v; s->tid = (uint32_t)(v >> 32); break;
    case PERF_SAMPLE_TIME:        s->time = v; break;
    case PERF_SAMPLE_ADDR:        s->addr = v; break;
    case PERF_SAMPLE_STREAM_ID:   s->stream_id = v; break;
    case PERF_SAMPLE_CPU:         s->cpu = (uint32_t)v; break;
    case PERF_SAMPLE_PERIOD:      s->period = v; break;
    case PERF_SAMPLE_DATA_SRC:    s->data_src = v; break;
    case PERF_SAMPLE_TRANSACTION: s->transaction = v; break;
    case PERF_SAMPLE_PHYS_ADDR:   s->phys_addr = v; break;
    case PERF_SAMPLE_CGROUP:      s->cgroup = v; break;
    case PERF_SAMPLE_DATA_PAGE_SIZE: s->data_page_size = v; break;
    case PERF_SAMPLE_CODE_PAGE_SIZE: s->code_page_size = v; break;
    default: break;
    }
}

static void store_weight(struct nt_perf_sample *s, uint64_t type, uint64_t v)
{
    s->weight = v;
    if (type & PERF_SAMPLE_WEIGHT_STRUCT) {
        s->latency = (uint32_t)v;                   /* var1_dw */
        s->ins_latency = (uint16_t)(v >> 32);       /* var2_w */
    } else {
        s->latency = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    }
}

int nt_perf_sample_decode(const void *body, size_t len, uint64_t t, struct nt_perf_sample *s)
{
    int n = nt_perf_sample_size(t);
    if (n < 0)
        return n;
    if (len < (size_t)n)
        return -EBADMSG;
    *s = (struct nt_perf_sample){ .sample_type = t };
    const uint8_t *p = body;
    for (size_t i = 0; i < sizeof(sample_order) / sizeof(sample_order[0]); i++) {
        uint64_t bit = sample_order[i] & t;
        if (!bit)
            continue;
        if (bit & (PERF_SAMPLE_WEIGHT | PERF_SAMPLE_WEIGHT_STRUCT))
            store_weight(s, t, load_u64(p));
        else
            store_field(s, bit, load_u64(p));
        p += 8;
    }
    return 0;
}

int nt_perf_ring_init(struct nt_perf_ring *r, void *base, size_t map_len, uint64_t sample_type)
{
    if (!base || map_len < sizeof(struct perf_event_mmap_page))
        return -EINVAL;
    int body = nt_perf_sample_size(sample_type);
    if (body < 0)
        return body;
    struct perf_event_mmap_page *meta = base;
    uint64_t off = meta->data_offset, size = meta->data_size;
    if (size == 0) {                        /* kernels before 4.1 */
        long page = sysconf(_SC_PAGESIZE);
        off = page > 0 ? (uint64_t)page : 4096;
        size = map_len > off ? map_len - off : 0;
    }
    if (size < 8 || (size & (size - 1)) || off < sizeof(*meta) || off > map_len ||
        size > map_len - off)
        return -EINVAL;
    *r = (struct nt_perf_ring){
        .meta = meta,
        .data = (const uint8_t *)base + off,
        .size = size,
        .mask = size - 1,
        .sample_type = sample_type,
        .sample_bytes = sizeof(struct perf_event_header) + (size_t)body,
    };
    return 0;
}

/* Copy n bytes at ring position pos, across the end of the buffer if
 * need be. n <= size: callers only ask for what data_head vouched for. */
static void ring_copy(const struct nt_perf_ring *r, uint64_t pos, void *dst, size_t n)
{
    size_t off = (size_t)(pos & r->mask);
    size_t first = n < r->size - off ? n : (size_t)(r->size - off);
    memcpy(dst, r->data + off, first);
    memcpy((uint8_t *)dst + first, r->data, n - first);
}

/* The first bytes of a record, contiguous: in place when it does not wrap,
 * else copied into the bounce buffer. We never read past what we copied:
 * the largest record we decode fits in it. */
static const uint8_t *record_view(struct nt_perf_ring *r, uint64_t pos, size_t size)
{
    size_t off = (size_t)(pos & r->mask);
    if (off + size <= r->size)
        return r->data + off;
    ring_copy(r, pos, r->bounce, size < sizeof(r->bounce) ? size : sizeof(r->bounce));
    return r->bounce;
}

static void on_sample(struct nt_perf_ring *r, const uint8_t *p, size_t size, nt_perf_sample_fn fn,
                      void *userdata, struct nt_perf_ring_stats *st)
{
    struct nt_perf_sample s;
    /* A sample's size is fixed by its sample_type; anything else is not ours. */
    if (size != r->sample_bytes ||
        nt_perf_sample_decode(p + sizeof(struct perf_event_header), size - sizeof(struct perf_event_header),
                              r->sample_type, &s) < 0) {
        st->bad_records++;
        return;
    }
    st->samples++;
    if (fn)
        fn(&s, userdata);
}

/* Minimum sizes: header plus the fixed fields we read or expect. */
#define LOST_MIN         (8 + 16)   /* id, lost */
#define LOST_SAMPLES_MIN (8 + 8)    /* lost */
#define THROTTLE_MIN     (8 + 24)   /* time, id, stream_id */

static void on_record(struct nt_perf_ring *r, uint64_t pos, const struct perf_event_header *h,
                      nt_perf_sample_fn fn, void *userdata, struct nt_perf_ring_stats *st)
{
    const uint8_t *p;
    switch (h->type) {
    case PERF_RECORD_SAMPLE:
        on_sample(r, record_view(r, pos, h->size), h->size, fn, userdata, st);
        return;
    case PERF_RECORD_LOST:
        if (h->size < LOST_MIN)
            break;
        p = record_view(r, pos, h->size);
        st->lost += load_u64(p + 16);
        return;
    case PERF_RECORD_LOST_SAMPLES:
        if (h->size < LOST_SAMPLES_MIN)
            break;
        p = record_view(r, pos, h->size);
        st->lost_samples += load_u64(p + 8);
        return;
    case PERF_RECORD_THROTTLE:
    case PERF_RECORD_UNTHROTTLE:
        if (h->size < THROTTLE_MIN)
            break;
        if (h->type == PERF_RECORD_THROTTLE)
            st->throttled++;
        else
            st->unthrottled++;
        return;
    default:
        st->other++;
        return;
    }
    st->bad_records++;          /* a known type, too short for its fields */
}

size_t nt_perf_ring_read(struct nt_perf_ring *r, nt_perf_sample_fn fn, void *userdata,
                         struct nt_perf_ring_stats *st)
{
    /* Pairs with the kernel's write barrier before it moves data_head. */
    uint64_t head = __atomic_load_n(&r->meta->data_head, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&r->meta->data_tail, __ATOMIC_RELAXED);   /* only we write it */
    size_t n = 0;

    /* The kernel never has more than the ring, and always whole u64s. */
    if (head - tail > r->size || (head - tail) % 8) {
        st->bad_records++;
        tail = head;
    }
    while (tail != head) {
        struct perf_event_header h;
        ring_copy(r, tail, &h, sizeof(h));      /* even a header may wrap */
        if (h.size < sizeof(h) || h.size % 8 || h.size > head - tail) {
            st->bad_records++;
            tail = head;        /* no way to find the next record: resync */
            break;
        }
        on_record(r, tail, &h, fn, userdata, st);
        tail += h.size;
        n++;
    }
    st->records += n;
    /* Our reads of the records happen before the kernel may overwrite them. */
    __atomic_store_n(&r->meta->data_tail, tail, __ATOMIC_RELEASE);
    return n;
}
