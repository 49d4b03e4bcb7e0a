/* The perf read path without a PMU: synthesized records in a plain buffer
 * shaped like a perf mmap (a fake perf_event_mmap_page header page plus a
 * power-of-two data area), the sample decoder, and the backend's drain
 * with its watched-pid filter and period tuning on top of fake rings. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>
#include <linux/perf_event.h>

#include "numatier/perf.h"
#include "numatier/sampler.h"

#define PAGE 4096
#define OUR_TYPE (PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR | \
                  PERF_SAMPLE_CPU | PERF_SAMPLE_WEIGHT | PERF_SAMPLE_DATA_SRC)

/* ---- a fake ring and records ---------------------------------------------- */

struct fake {
    uint8_t *buf;
    size_t size;
    struct perf_event_mmap_page *meta;
    struct nt_perf_ring ring;
};

/* Page-aligned memory of any size (aligned_alloc wants a multiple). */
static void *page_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, PAGE, n) != 0 || !p)
        abort();
    return p;
}

static void fake_init(struct fake *f, size_t size, uint64_t sample_type, uint64_t start)
{
    f->buf = page_alloc(PAGE + size);
    memset(f->buf, 0, PAGE);
    memset(f->buf + PAGE, 0xa5, size);      /* stale bytes must never be decoded */
    f->size = size;
    f->meta = (struct perf_event_mmap_page *)f->buf;
    f->meta->data_offset = PAGE;
    f->meta->data_size = size;
    f->meta->data_head = f->meta->data_tail = start;
    assert_int_equal(nt_perf_ring_init(&f->ring, f->buf, PAGE + size, sample_type), 0);
}

static void fake_done(struct fake *f)
{
    free(f->buf);
}

/* Write bytes at data_head, wrapping at the end of the data area. */
static void fake_put(struct fake *f, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        f->buf[PAGE + ((f->meta->data_head + i) & (f->size - 1))] = b[i];
    f->meta->data_head += len;
}

struct rec {
    uint8_t b[1024];
    size_t len;
};

static void rec_start(struct rec *r, uint32_t type)
{
    struct perf_event_header h = { .type = type, .misc = PERF_RECORD_MISC_USER };
    memcpy(r->b, &h, sizeof(h));
    r->len = sizeof(h);
}

static void rec_u64(struct rec *r, uint64_t v)
{
    memcpy(r->b + r->len, &v, 8);
    r->len += 8;
}

static void rec_u32x2(struct rec *r, uint32_t lo, uint32_t hi)
{
    rec_u64(r, (uint64_t)hi << 32 | lo);
}

static void rec_end(struct rec *r)
{
    uint16_t size = (uint16_t)r->len;
    memcpy(r->b + offsetof(struct perf_event_header, size), &size, sizeof(size));
}

/* A sample as the kernel lays it out for OUR_TYPE (written independently
 * of the decoder's order table). */
static void rec_sample(struct rec *r, uint32_t pid, uint32_t tid, uint64_t addr, uint32_t cpu,
                       uint64_t weight, uint64_t data_src)
{
    rec_start(r, PERF_RECORD_SAMPLE);
    rec_u64(r, 0x1d);                   /* identifier */
    rec_u32x2(r, pid, tid);             /* tid */
    rec_u64(r, 123456789);              /* time */
    rec_u64(r, addr);                   /* addr */
    rec_u32x2(r, cpu, 0);               /* cpu, res */
    rec_u64(r, weight);                 /* weight */
    rec_u64(r, data_src);               /* data_src */
    rec_end(r);
}

/* sample_id trailer of non-sample records, for OUR_TYPE with sample_id_all. */
static void rec_sample_id(struct rec *r)
{
    rec_u32x2(r, 77, 78);               /* pid, tid */
    rec_u64(r, 999);                    /* time */
    rec_u32x2(r, 3, 0);                 /* cpu */
    rec_u64(r, 0x1d);                   /* identifier */
}

static void put_sample(struct fake *f, uint32_t pid, uint64_t addr)
{
    struct rec r;
    rec_sample(&r, pid, pid + 1, addr, 5, 42, PERF_MEM_S(LVLNUM, RAM));
    fake_put(f, r.b, r.len);
}

static void put_lost(struct fake *f, uint64_t lost)
{
    struct rec r;
    rec_start(&r, PERF_RECORD_LOST);
    rec_u64(&r, 0x1d);                  /* id */
    rec_u64(&r, lost);
    rec_sample_id(&r);
    rec_end(&r);
    fake_put(f, r.b, r.len);
}

static void put_lost_samples(struct fake *f, uint64_t lost)
{
    struct rec r;
    rec_start(&r, PERF_RECORD_LOST_SAMPLES);
    rec_u64(&r, lost);
    rec_sample_id(&r);
    rec_end(&r);
    fake_put(f, r.b, r.len);
}

static void put_throttle(struct fake *f, uint32_t type)
{
    struct rec r;
    rec_start(&r, type);
    rec_u64(&r, 1000);                  /* time */
    rec_u64(&r, 0x1d);                  /* id */
    rec_u64(&r, 0x1d);                  /* stream_id */
    rec_sample_id(&r);
    rec_end(&r);
    fake_put(f, r.b, r.len);
}

static void put_raw(struct fake *f, uint32_t type, uint16_t size, uint8_t fill)
{
    uint8_t b[1024];
    struct perf_event_header h = { .type = type, .size = size };
    memset(b, fill, sizeof(b));
    memcpy(b, &h, sizeof(h));
    fake_put(f, b, size < sizeof(h) ? sizeof(h) : size);
}

/* ---- collecting samples --------------------------------------------------- */

struct seen {
    struct nt_perf_sample s[64];
    size_t n;
};

static void collect(const struct nt_perf_sample *s, void *userdata)
{
    struct seen *seen = userdata;
    if (seen->n < 64)
        seen->s[seen->n] = *s;
    seen->n++;
}

static size_t drain(struct fake *f, struct seen *seen, struct nt_perf_ring_stats *st)
{
    size_t n = nt_perf_ring_read(&f->ring, collect, seen, st);
    assert_true(f->meta->data_tail == f->meta->data_head);     /* always fully consumed */
    return n;
}

/* ---- tests: the ring ------------------------------------------------------ */

static void test_init_checks(void **state)
{
    (void)state;
    struct nt_perf_ring r;
    uint8_t *buf = page_alloc(PAGE * 3);
    memset(buf, 0, PAGE * 3);
    struct perf_event_mmap_page *m = (struct perf_event_mmap_page *)buf;
    m->data_offset = PAGE;
    m->data_size = 3000;                                    /* not a power of two */
    assert_int_equal(nt_perf_ring_init(&r, buf, PAGE * 3, OUR_TYPE), -EINVAL);
    m->data_size = PAGE * 4;                                /* past the mapping */
    assert_int_equal(nt_perf_ring_init(&r, buf, PAGE * 3, OUR_TYPE), -EINVAL);
    m->data_size = PAGE;
    assert_int_equal(nt_perf_ring_init(&r, buf, PAGE * 3, OUR_TYPE | PERF_SAMPLE_CALLCHAIN), -EOPNOTSUPP);
    assert_int_equal(nt_perf_ring_init(&r, buf, PAGE * 3, OUR_TYPE | PERF_SAMPLE_WEIGHT_STRUCT), -EINVAL);
    assert_int_equal(nt_perf_ring_init(&r, NULL, PAGE * 3, OUR_TYPE), -EINVAL);
    assert_int_equal(nt_perf_ring_init(&r, buf, 100, OUR_TYPE), -EINVAL);
    assert_int_equal(nt_perf_ring_init(&r, buf, PAGE * 3, OUR_TYPE), 0);
    assert_int_equal(r.size, PAGE);
    assert_int_equal(r.sample_bytes, 8 + 7 * 8);
    /* Kernels before 4.1 leave data_offset/size 0: the data follows the
     * first page and fills the mapping. */
    m->data_offset = 0;
    m->data_size = 0;
    if (sysconf(_SC_PAGESIZE) == PAGE) {
        assert_int_equal(nt_perf_ring_init(&r, buf, PAGE * 3, OUR_TYPE), 0);
        assert_int_equal(r.size, PAGE * 2);
        assert_ptr_equal(r.data, buf + PAGE);
    }
    free(buf);
}

static void test_normal_samples(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, PAGE, OUR_TYPE, 0);
    put_sample(&f, 100, 0x7f0000001234);
    put_sample(&f, 101, 0x7f0000005678);
    put_sample(&f, 102, 0x7f000000abcd);
    assert_int_equal(drain(&f, &seen, &st), 3);
    assert_int_equal(seen.n, 3);
    assert_int_equal(st.samples, 3);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.bad_records, 0);
    assert_int_equal(seen.s[0].pid, 100);
    assert_int_equal(seen.s[0].tid, 101);
    assert_int_equal(seen.s[0].id, 0x1d);
    assert_int_equal(seen.s[0].time, 123456789);
    assert_int_equal(seen.s[0].addr, 0x7f0000001234);
    assert_int_equal(seen.s[0].cpu, 5);
    assert_int_equal(seen.s[0].weight, 42);
    assert_int_equal(seen.s[0].latency, 42);
    assert_int_equal(seen.s[0].data_src, PERF_MEM_S(LVLNUM, RAM));
    assert_int_equal(seen.s[2].addr, 0x7f000000abcd);
    /* Reading again finds nothing new. */
    assert_int_equal(drain(&f, &seen, &st), 0);
    assert_int_equal(seen.n, 3);
    fake_done(&f);
}

static void test_empty(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, PAGE, OUR_TYPE, 12345 * 8);
    assert_int_equal(drain(&f, &seen, &st), 0);
    assert_int_equal(seen.n, 0);
    assert_memory_equal(&st, &(struct nt_perf_ring_stats){ 0 }, sizeof(st));
    assert_int_equal(f.meta->data_tail, 12345 * 8);
    fake_done(&f);
}

/* Records ending exactly at the end of the data area, and head parked on
 * the boundary. */
static void test_head_at_boundary(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    const size_t size = 256, rec = 8 + 7 * 8;       /* 64-byte samples: 4 fill it */
    fake_init(&f, size, OUR_TYPE, size);
    for (int i = 0; i < 4; i++)
        put_sample(&f, 200 + i, 0x1000 * (i + 1));
    assert_int_equal(f.meta->data_head, 2 * size);
    assert_int_equal(drain(&f, &seen, &st), 4);
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.s[3].pid, 203);
    assert_int_equal(f.meta->data_tail % size, 0);
    /* A full ring (head - tail == size) is legal. */
    for (size_t i = 0; i < size / rec; i++)
        put_sample(&f, 300, 0x2000);
    assert_int_equal(drain(&f, &seen, &st), size / rec);
    assert_int_equal(st.bad_records, 0);
    fake_done(&f);
}

/* Start the ring at every 4-byte position around the end so that a record
 * splits in its header (4 + 4), at the header/body border, and at every
 * u64 of its body. The reader must hand over the same sample each time. */
static void test_wrap_every_offset(void **state)
{
    (void)state;
    const size_t size = 256, rec = 8 + 7 * 8;
    const uint64_t bases[] = { 0, size * 1000, UINT64_C(1) << 32, UINT64_MAX - 4 * size + 1 };
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        for (size_t back = 4; back <= rec + 8; back += 4) {
            struct fake f;
            struct seen seen = { 0 };
            struct nt_perf_ring_stats st = { 0 };
            uint64_t start = bases[b] - bases[b] % size + size - back;
            fake_init(&f, size, OUR_TYPE, start);
            put_sample(&f, 400, 0x7fff00001000 + back);
            put_sample(&f, 401, 0x7fff00002000 + back);
            assert_int_equal(drain(&f, &seen, &st), 2);
            assert_int_equal(st.bad_records, 0);
            assert_int_equal(seen.n, 2);
            assert_int_equal(seen.s[0].pid, 400);
            assert_int_equal(seen.s[0].tid, 401);
            assert_int_equal(seen.s[0].addr, 0x7fff00001000 + back);
            assert_int_equal(seen.s[0].cpu, 5);
            assert_int_equal(seen.s[0].data_src, PERF_MEM_S(LVLNUM, RAM));
            assert_int_equal(seen.s[1].pid, 401);
            assert_int_equal(seen.s[1].addr, 0x7fff00002000 + back);
            fake_done(&f);
        }
    }
}

/* LOST and THROTTLE records wrap too. */
static void test_wrap_other_records(void **state)
{
    (void)state;
    for (size_t back = 8; back <= 48; back += 8) {
        struct fake f;
        struct seen seen = { 0 };
        struct nt_perf_ring_stats st = { 0 };
        fake_init(&f, 256, OUR_TYPE, 256 - back);
        put_lost(&f, 11);
        put_throttle(&f, PERF_RECORD_THROTTLE);
        put_lost_samples(&f, 6);
        assert_int_equal(drain(&f, &seen, &st), 3);
        assert_int_equal(st.lost, 11);
        assert_int_equal(st.throttled, 1);
        assert_int_equal(st.lost_samples, 6);
        assert_int_equal(st.bad_records, 0);
        fake_done(&f);
    }
}

static void test_lost_and_throttle(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, PAGE, OUR_TYPE, 0);
    put_sample(&f, 1, 0x1000);
    put_lost(&f, 7);
    put_lost(&f, 3);
    put_lost_samples(&f, 5);
    put_throttle(&f, PERF_RECORD_THROTTLE);
    put_throttle(&f, PERF_RECORD_UNTHROTTLE);
    put_throttle(&f, PERF_RECORD_THROTTLE);
    put_sample(&f, 2, 0x2000);
    assert_int_equal(drain(&f, &seen, &st), 8);
    assert_int_equal(st.lost, 10);
    assert_int_equal(st.lost_samples, 5);
    assert_int_equal(st.throttled, 2);
    assert_int_equal(st.unthrottled, 1);
    assert_int_equal(st.samples, 2);
    assert_int_equal(st.bad_records, 0);
    assert_int_equal(seen.s[1].pid, 2);
    fake_done(&f);
}

static void test_unknown_types_skipped(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, PAGE, OUR_TYPE, 0);
    put_raw(&f, PERF_RECORD_MMAP2, 96, 0x11);
    put_sample(&f, 10, 0x1000);
    put_raw(&f, PERF_RECORD_COMM, 40, 0x22);
    put_raw(&f, 999, 16, 0x33);
    put_raw(&f, PERF_RECORD_SWITCH_CPU_WIDE, 8, 0);     /* header only is fine */
    put_sample(&f, 11, 0x2000);
    assert_int_equal(drain(&f, &seen, &st), 6);
    assert_int_equal(st.other, 4);
    assert_int_equal(st.samples, 2);
    assert_int_equal(st.bad_records, 0);
    assert_int_equal(seen.s[0].pid, 10);
    assert_int_equal(seen.s[1].pid, 11);
    fake_done(&f);
}

/* Malformed framing: count it, skip to head, and carry on next time. */
static void test_truncated_records(void **state)
{
    (void)state;
    static const uint16_t bad_sizes[] = { 0, 4, 12, 20 };
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        struct fake f;
        struct seen seen = { 0 };
        struct nt_perf_ring_stats st = { 0 };
        fake_init(&f, PAGE, OUR_TYPE, 64);
        put_sample(&f, 1, 0x1000);
        put_raw(&f, PERF_RECORD_SAMPLE, bad_sizes[i], 0x5a);
        f.meta->data_head += 8 - (f.meta->data_head % 8 ? f.meta->data_head % 8 : 8);
        put_sample(&f, 2, 0x2000);      /* unreachable: framing is lost */
        drain(&f, &seen, &st);
        assert_int_equal(seen.n, 1);
        assert_int_equal(st.bad_records, 1);
        /* The next batch is read normally. */
        put_sample(&f, 3, 0x3000);
        drain(&f, &seen, &st);
        assert_int_equal(seen.n, 2);
        assert_int_equal(seen.s[1].pid, 3);
        assert_int_equal(st.bad_records, 1);
        fake_done(&f);
    }
}

static void test_record_beyond_head(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, PAGE, OUR_TYPE, 0);
    put_sample(&f, 1, 0x1000);
    /* A header claiming 512 bytes when only 16 are published. */
    struct perf_event_header h = { .type = PERF_RECORD_SAMPLE, .size = 512 };
    fake_put(&f, &h, sizeof(h));
    fake_put(&f, &h, sizeof(h));
    drain(&f, &seen, &st);
    assert_int_equal(seen.n, 1);
    assert_int_equal(st.bad_records, 1);
    fake_done(&f);
}

/* Well framed but wrong inside: skip just that record. */
static void test_bad_record_contents(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, PAGE, OUR_TYPE, 0);
    put_raw(&f, PERF_RECORD_SAMPLE, 32, 0x77);          /* a sample too short for OUR_TYPE */
    put_raw(&f, PERF_RECORD_SAMPLE, 80, 0x77);          /* and one too long */
    put_raw(&f, PERF_RECORD_LOST, 16, 0x77);            /* no room for lost */
    put_raw(&f, PERF_RECORD_LOST_SAMPLES, 8, 0x77);
    put_raw(&f, PERF_RECORD_THROTTLE, 24, 0x77);
    put_sample(&f, 9, 0x9000);
    assert_int_equal(drain(&f, &seen, &st), 6);
    assert_int_equal(st.bad_records, 5);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.throttled, 0);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.s[0].pid, 9);
    fake_done(&f);
}

static void test_impossible_head(void **state)
{
    (void)state;
    struct fake f;
    struct seen seen = { 0 };
    struct nt_perf_ring_stats st = { 0 };
    fake_init(&f, 256, OUR_TYPE, 0);
    f.meta->data_head = 256 + 8;                        /* more than the ring holds */
    assert_int_equal(drain(&f, &seen, &st), 0);
    assert_int_equal(st.bad_records, 1);
    f.meta->data_head += 4;                             /* not whole u64s */
    assert_int_equal(drain(&f, &seen, &st), 0);
    assert_int_equal(st.bad_records, 2);
    f.meta->data_head = f.meta->data_tail - 8;          /* head behind tail */
    assert_int_equal(drain(&f, &seen, &st), 0);
    assert_int_equal(st.bad_records, 3);
    assert_int_equal(seen.n, 0);
    fake_done(&f);
}

/* Random bytes, random heads: no crash, no hang, tail always reaches head. */
static void test_garbage(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 3000; round++) {
        struct fake f;
        struct seen seen = { 0 };
        struct nt_perf_ring_stats st = { 0 };
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        fake_init(&f, 256, OUR_TYPE, x);
        uint8_t junk[256];
        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[i] = (uint8_t)x;
            /* Sometimes plausible headers, to get past the framing checks. */
            if (i % 8 == 6 && (x & 1))
                junk[i] = (uint8_t)(8 * (x % 12)), junk[i + 1] = 0, i++;
        }
        size_t len = (size_t)(x % 33) * 8;
        if (round % 5 == 0)
            len = (size_t)(x % (sizeof(junk) + 1));
        fake_put(&f, junk, len);
        size_t n = drain(&f, &seen, &st);
        assert_true(n <= len / 8);
        assert_true(st.samples + st.bad_records + st.other + st.throttled + st.unthrottled >= n);
        fake_done(&f);
    }
}

/* ---- tests: decoding ------------------------------------------------------ */

static void test_decode_every_field(void **state)
{
    (void)state;
    const uint64_t all = NT_PERF_SAMPLE_DECODABLE & ~(uint64_t)PERF_SAMPLE_WEIGHT_STRUCT;
    assert_int_equal(nt_perf_sample_size(all), 16 * 8);
    uint64_t body[16];
    for (int i = 0; i < 16; i++)
        body[i] = 0x100 + (uint64_t)i;
    body[2] = (uint64_t)2222 << 32 | 1111;              /* pid, tid */
    body[7] = 7;                                        /* cpu */
    struct nt_perf_sample s;
    assert_int_equal(nt_perf_sample_decode(body, sizeof(body), all, &s), 0);
    /* The kernel's order: identifier, ip, tid, time, addr, id, stream_id,
     * cpu, period, weight, data_src, transaction, phys_addr, cgroup,
     * data_page_size, code_page_size. */
    assert_int_equal(s.ip, 0x101);
    assert_int_equal(s.pid, 1111);
    assert_int_equal(s.tid, 2222);
    assert_int_equal(s.time, 0x103);
    assert_int_equal(s.addr, 0x104);
    assert_int_equal(s.id, 0x105);                      /* ID after IDENTIFIER: same value in life */
    assert_int_equal(s.stream_id, 0x106);
    assert_int_equal(s.cpu, 7);
    assert_int_equal(s.period, 0x108);
    assert_int_equal(s.weight, 0x109);
    assert_int_equal(s.data_src, 0x10a);
    assert_int_equal(s.transaction, 0x10b);
    assert_int_equal(s.phys_addr, 0x10c);
    assert_int_equal(s.cgroup, 0x10d);
    assert_int_equal(s.data_page_size, 0x10e);
    assert_int_equal(s.code_page_size, 0x10f);
    assert_int_equal(s.sample_type, all);
    assert_int_equal(nt_perf_sample_decode(body, sizeof(body) - 8, all, &s), -EBADMSG);
    assert_int_equal(nt_perf_sample_size(PERF_SAMPLE_RAW), -EOPNOTSUPP);
    assert_int_equal(nt_perf_sample_size(PERF_SAMPLE_READ | PERF_SAMPLE_TID), -EOPNOTSUPP);
}

/* What the backend asks for, with and without PHYS_ADDR and WEIGHT_STRUCT;
 * the body may sit at any alignment. */
static void test_decode_ours(void **state)
{
    (void)state;
    const uint64_t base = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR |
                          PERF_SAMPLE_CPU | PERF_SAMPLE_DATA_SRC;
    uint8_t raw[8 * 9 + 3];
    uint8_t *b = raw + 3;                               /* unaligned on purpose */
    uint64_t v[9] = { 0x1d, (uint64_t)501 << 32 | 500, 1000, 0x7f12345678, 3,
                      (uint64_t)0xbeef << 48 | (uint64_t)77 << 32 | 311, PERF_MEM_S(LVLNUM, CXL),
                      0x123456789, 0 };
    memcpy(b, v, sizeof(v));
    struct nt_perf_sample s;

    /* WEIGHT: latency is the whole value. */
    uint64_t w[9] = { 0x1d, (uint64_t)501 << 32 | 500, 1000, 0x7f12345678, 3, 311, 0x42, 0, 0 };
    memcpy(b, w, sizeof(w));
    assert_int_equal(nt_perf_sample_decode(b, 7 * 8, base | PERF_SAMPLE_WEIGHT, &s), 0);
    assert_int_equal(s.latency, 311);
    assert_int_equal(s.ins_latency, 0);
    assert_int_equal(s.data_src, 0x42);
    assert_int_equal(s.phys_addr, 0);

    /* WEIGHT_STRUCT + PHYS_ADDR: var1_dw is the load latency, var2_w the
     * instruction latency, phys_addr comes last. */
    memcpy(b, v, sizeof(v));
    uint64_t t = base | PERF_SAMPLE_WEIGHT_STRUCT | PERF_SAMPLE_PHYS_ADDR;
    assert_int_equal(nt_perf_sample_size(t), 8 * 8);
    assert_int_equal(nt_perf_sample_decode(b, 8 * 8, t, &s), 0);
    assert_int_equal(s.pid, 500);
    assert_int_equal(s.tid, 501);
    assert_int_equal(s.addr, 0x7f12345678);
    assert_int_equal(s.cpu, 3);
    assert_int_equal(s.latency, 311);
    assert_int_equal(s.ins_latency, 77);
    assert_int_equal(s.data_src, PERF_MEM_S(LVLNUM, CXL));
    assert_int_equal(s.phys_addr, 0x123456789);
    assert_int_equal(nt_perf_sample_size(base | PERF_SAMPLE_WEIGHT | PERF_SAMPLE_WEIGHT_STRUCT), -EINVAL);
}

static void test_sample_to_access(void **state)
{
    (void)state;
    struct nt_access a;
    struct nt_perf_sample s = {
        .sample_type = OUR_TYPE | PERF_SAMPLE_PHYS_ADDR,
        .pid = 42, .tid = 43, .addr = 0x7f0000012345, .phys_addr = 0x123456789, .cpu = 6,
        .latency = 900, .weight = 900,
        .data_src = PERF_MEM_S(LVL, HIT) | PERF_MEM_S(LVL, REM_RAM1) | PERF_MEM_S(LVLNUM, L3) |
                    PERF_MEM_S(REMOTE, REMOTE),
    };
    assert_true(nt_perf_sample_to_access(&s, 4096, &a));
    assert_int_equal(a.pid, 42);
    assert_int_equal(a.tid, 43);
    assert_int_equal(a.vaddr, 0x7f0000012000);
    assert_int_equal(a.paddr, 0x123456000);
    assert_int_equal(a.nr_pages, 1);
    assert_int_equal(a.weight, 1);
    assert_int_equal(a.cpu, 6);
    assert_int_equal(a.source, NT_MEM_SRC_REMOTE_DRAM);

    s.sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_ADDR;      /* no phys, cpu, data_src */
    assert_true(nt_perf_sample_to_access(&s, 4096, &a));
    assert_int_equal(a.paddr, 0);
    assert_int_equal(a.cpu, -1);
    assert_int_equal(a.source, NT_MEM_SRC_UNKNOWN);

    s.addr = 0;
    assert_false(nt_perf_sample_to_access(&s, 4096, &a));
    s.addr = 0xffff888012345678;                                /* a kernel address */
    assert_false(nt_perf_sample_to_access(&s, 4096, &a));
    s.addr = 0x1000;
    s.sample_type = PERF_SAMPLE_TID;
    assert_false(nt_perf_sample_to_access(&s, 4096, &a));
}

/* ---- tests: the watched set and the backend's drain ----------------------- */

static void test_pidset(void **state)
{
    (void)state;
    struct nt_pidset s = { 0 };
    assert_false(nt_pidset_contains(&s, 1));
    assert_false(nt_pidset_remove(&s, 1));
    assert_int_equal(nt_pidset_add(&s, 0), -EINVAL);
    assert_int_equal(nt_pidset_add(&s, -5), -EINVAL);
    for (pid_t p = 1; p <= 3000; p++)
        assert_int_equal(nt_pidset_add(&s, p * 7), 0);
    assert_int_equal(nt_pidset_add(&s, 7), 0);                  /* already there */
    assert_int_equal(s.used, 3000);
    for (pid_t p = 1; p <= 3000; p += 2)
        assert_true(nt_pidset_remove(&s, p * 7));
    assert_false(nt_pidset_remove(&s, 7));
    assert_int_equal(s.used, 1500);
    for (pid_t p = 1; p <= 3000; p++) {
        assert_true(nt_pidset_contains(&s, p * 7) == (p % 2 == 0));
        assert_false(nt_pidset_contains(&s, p * 7 + 1));
    }
    /* Churn: many adds and removes must not fill the table with tombstones. */
    size_t cap = s.cap;
    for (int round = 0; round < 100000; round++) {
        pid_t p = 1000000 + round;
        assert_int_equal(nt_pidset_add(&s, p), 0);
        assert_true(nt_pidset_remove(&s, p));
    }
    assert_true(s.cap <= cap * 2);
    assert_int_equal(s.used, 1500);
    assert_true(nt_pidset_contains(&s, 14));
    nt_pidset_done(&s);
    assert_false(nt_pidset_contains(&s, 14));
}

struct delivered {
    struct nt_access a[64];
    size_t n;
};

static void on_access(const struct nt_access *a, void *userdata)
{
    struct delivered *d = userdata;
    if (d->n < 64)
        d->a[d->n] = *a;
    d->n++;
}

static struct nt_perf_attrs fake_attrs(void)
{
    struct nt_perf_attrs a = { 0 };
    a.sample.sample_type = OUR_TYPE;
    a.sample.sample_period = 20000;
    a.limits = (struct nt_period_limits){ .min = 1000, .max = 1000000000, .align = 1 };
    return a;
}

static void test_drain_filters_and_counts(void **state)
{
    (void)state;
    const struct nt_sampler_ops *ops = &nt_sampler_perf_ops;
    struct nt_perf_attrs attrs = fake_attrs();
    struct nt_perf_sampler *s = NULL;
    struct fake f0, f1;
    assert_int_equal(nt_perf_sampler_new(&attrs, 1.0, 999, &s), 0);
    fake_init(&f0, PAGE, OUR_TYPE, 0);
    fake_init(&f1, PAGE, OUR_TYPE, PAGE - 16);                  /* this one wraps */
    assert_int_equal(nt_perf_sampler_add_ring(s, 0, -1, -1, f0.buf, PAGE * 2, false), 0);
    assert_int_equal(nt_perf_sampler_add_ring(s, 1, -1, -1, f1.buf, PAGE * 2, false), 0);

    assert_int_equal(ops->watch(s, 100), 0);
    assert_int_equal(ops->watch(s, 101), 0);
    assert_int_equal(ops->watch(s, 999), 0);                    /* ourselves: ignored */
    put_sample(&f0, 100, 0x7f0000001234);
    put_sample(&f0, 200, 0x7f0000001234);                       /* not watched */
    put_sample(&f0, 999, 0x7f0000001234);                       /* the daemon itself */
    put_sample(&f0, 0, 0x7f0000001234);                         /* idle */
    put_lost(&f0, 4);
    put_sample(&f1, 101, 0x7f0000009abc);
    put_sample(&f1, 100, 0xffffffff81000000);                   /* kernel address */
    put_throttle(&f1, PERF_RECORD_THROTTLE);
    put_raw(&f1, PERF_RECORD_SAMPLE, 0, 0);                     /* garbage */

    struct delivered d = { 0 };
    assert_int_equal(ops->drain(s, 1000, 0, on_access, &d), 2);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.a[0].pid, 100);
    assert_int_equal(d.a[0].vaddr, 0x7f0000001000);
    assert_int_equal(d.a[0].source, NT_MEM_SRC_LOCAL_DRAM);
    assert_int_equal(d.a[1].pid, 101);
    assert_int_equal(d.a[1].vaddr, 0x7f0000009000);

    struct nt_sampler_stats st;
    ops->stats(s, &st);
    assert_int_equal(st.samples, 2);
    assert_int_equal(st.unwatched, 3);
    assert_int_equal(st.lost, 4);
    assert_int_equal(st.throttled, 1);
    assert_int_equal(st.bad_records, 1);
    assert_int_equal(st.period, 20000);
    assert_int_equal(st.targets, 2);

    /* Unwatch: its samples are dropped from now on. */
    assert_int_equal(ops->unwatch(s, 100), 0);
    assert_int_equal(ops->unwatch(s, 12345), 0);                /* never watched: fine */
    put_sample(&f0, 100, 0x7f0000001234);
    put_sample(&f0, 101, 0x7f0000001234);
    d.n = 0;
    assert_int_equal(ops->drain(s, 2000, 0, on_access, &d), 1);
    assert_int_equal(d.a[0].pid, 101);
    ops->stats(s, &st);
    assert_int_equal(st.samples, 3);
    assert_int_equal(st.unwatched, 4);
    assert_int_equal(st.targets, 1);

    ops->close(s);
    ops->close(NULL);
    fake_done(&f0);
    fake_done(&f1);
}

static void test_drain_tunes_period(void **state)
{
    (void)state;
    const struct nt_sampler_ops *ops = &nt_sampler_perf_ops;
    struct nt_perf_attrs attrs = fake_attrs();
    struct nt_perf_sampler *s = NULL;
    struct fake f;
    struct nt_sampler_stats st;
    struct delivered d = { 0 };
    assert_int_equal(nt_perf_sampler_new(&attrs, 1.0, 1, &s), 0);
    fake_init(&f, PAGE, OUR_TYPE, 0);
    assert_int_equal(nt_perf_sampler_add_ring(s, 0, -1, -1, f.buf, PAGE * 2, false), 0);

    /* The first drain opens the window; within it nothing changes. */
    put_sample(&f, 5, 0x1000);
    ops->drain(s, 10000000, 500000, on_access, &d);
    put_sample(&f, 5, 0x1000);
    ops->drain(s, 10500000, 550000, on_access, &d);
    ops->stats(s, &st);
    assert_int_equal(st.period, 20000);
    /* One second later at 10% CPU against a 1% budget: 8x (the cap). */
    put_sample(&f, 5, 0x1000);
    ops->drain(s, 11000000, 600000, on_access, &d);
    ops->stats(s, &st);
    assert_int_equal(st.period, 160000);
    /* The next window idles at 0.1% with samples: a gentle decrease. */
    put_sample(&f, 5, 0x1000);
    ops->drain(s, 12000000, 601000, on_access, &d);
    ops->stats(s, &st);
    assert_int_equal(st.period, 140000);
    /* A window with no samples at all keeps the period. */
    ops->drain(s, 13000000, 602000, on_access, &d);
    ops->stats(s, &st);
    assert_int_equal(st.period, 140000);
    /* Throttling doubles it even within budget. */
    put_throttle(&f, PERF_RECORD_THROTTLE);
    ops->drain(s, 14000000, 603000, on_access, &d);
    ops->stats(s, &st);
    assert_int_equal(st.period, 280000);
    /* A clock going backwards restarts the window instead of tuning. */
    put_sample(&f, 5, 0x1000);
    ops->drain(s, 100, 603000, on_access, &d);
    ops->stats(s, &st);
    assert_int_equal(st.period, 280000);
    ops->close(s);
    fake_done(&f);
}

/* ---- tests: the real kernel ---------------------------------------------- */

/* The whole read path against the running kernel, with no PMU: a software
 * page-fault event has the same ring, record framing and sample layout as
 * PEBS/IBS (data_src is "N/A" and weight 0), and its ADDR is the faulting
 * address. Opened CPU-wide on every online CPU like the real thing. */
static struct nt_perf_sampler *open_page_faults(uint64_t period, size_t *ncpus)
{
    struct nt_perf_attrs a = fake_attrs();
    a.sample.size = sizeof(a.sample);
    a.sample.type = PERF_TYPE_SOFTWARE;
    a.sample.config = PERF_COUNT_SW_PAGE_FAULTS;
    a.sample.sample_period = period;
    a.sample.sample_type = OUR_TYPE | PERF_SAMPLE_PHYS_ADDR;
    a.sample.sample_id_all = 1;
    a.limits = (struct nt_period_limits){ .min = 1, .max = 1000000, .align = 1 };
    snprintf(a.event, sizeof(a.event), "page-faults");

    FILE *f = fopen("/sys/devices/system/cpu/online", "r");
    char line[256] = "";
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    int *cpus = NULL;
    assert_int_equal(nt_perf_cpulist_parse(line, &cpus, ncpus), 0);

    struct nt_perf_sampler *s = NULL;
    char why[256] = "";
    int r = nt_perf_sampler_open(&a, cpus, *ncpus, 1.0, 1, &s, why, sizeof(why));
    free(cpus);
    if (r == -EACCES || r == -EPERM || r == -ENOENT || r == -ENOSYS) {
        print_message("skipping: %s\n", why);
        return NULL;
    }
    if (r < 0)
        fail_msg("nt_perf_sampler_open: %s", why);
    return s;
}

/* Anonymous memory that faults once per base page (never one THP). */
static uint8_t *map_pages(size_t pages)
{
    void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    madvise(p, pages * PAGE, MADV_NOHUGEPAGE);
    return p;
}

static size_t touch_pages(uint8_t *p, size_t pages)
{
    for (size_t i = 0; i < pages; i++)
        ((volatile uint8_t *)p)[i * PAGE] = 1;
    return pages;
}

static void test_real_kernel_ring(void **state)
{
    (void)state;
    const struct nt_sampler_ops *ops = &nt_sampler_perf_ops;
    size_t ncpus;
    struct nt_perf_sampler *s = open_page_faults(1, &ncpus);
    if (!s)
        skip();
    const size_t pages = 256;
    uint8_t *buf = map_pages(pages);

    /* Not watched yet: the faults are read and dropped. */
    struct delivered d = { 0 };
    ops->drain(s, 1, 0, on_access, &d);
    touch_pages(buf, 8);
    assert_int_equal(ops->drain(s, 2, 0, on_access, &d), 0);
    struct nt_sampler_stats st;
    ops->stats(s, &st);
    assert_true(st.unwatched >= 8);

    /* Watched: every fault on a new page arrives, page-aligned, ours. */
    assert_int_equal(ops->watch(s, getpid()), 0);
    size_t inside = 0;
    for (int round = 0; round < 6; round++) {       /* 6 x 40 = 240 pages: the rings wrap */
        d.n = 0;
        touch_pages(buf + (8 + (size_t)round * 40) * PAGE, 40);
        int n = ops->drain(s, 3 + (uint64_t)round, 0, on_access, &d);
        assert_true(n >= 40);
        for (size_t i = 0; i < d.n && i < 64; i++) {
            assert_int_equal(d.a[i].pid, getpid());
            assert_int_equal(d.a[i].vaddr % PAGE, 0);
            assert_in_range(d.a[i].cpu, 0, 65535);
            assert_int_equal(d.a[i].weight, 1);
            assert_int_equal(d.a[i].source, NT_MEM_SRC_UNKNOWN);
            inside += d.a[i].vaddr >= (uintptr_t)buf && d.a[i].vaddr < (uintptr_t)buf + pages * PAGE;
        }
    }
    assert_true(inside >= 200);
    ops->stats(s, &st);
    assert_int_equal(st.bad_records, 0);
    assert_int_equal(st.lost, 0);
    assert_true(st.samples >= 240);
    munmap(buf, pages * PAGE);
    ops->close(s);
}

/* Never drained: the kernel fills the ring, then reports what it dropped
 * with PERF_RECORD_LOST once there is room again. */
static void test_real_kernel_lost(void **state)
{
    (void)state;
    const struct nt_sampler_ops *ops = &nt_sampler_perf_ops;
    size_t ncpus;
    struct nt_perf_sampler *s = open_page_faults(1, &ncpus);
    if (!s)
        skip();
    const size_t pages = 8192;                      /* 32 MiB: far more samples than a 64 KiB ring holds */
    uint8_t *buf = map_pages(pages);
    assert_int_equal(ops->watch(s, getpid()), 0);
    touch_pages(buf, pages);
    struct delivered d = { 0 };
    ops->drain(s, 1, 0, on_access, &d);             /* frees the rings */
    munmap(buf, pages * PAGE);                      /* and more faults land after a LOST record */
    buf = map_pages(64);
    touch_pages(buf, 64);
    ops->drain(s, 2, 0, on_access, &d);
    struct nt_sampler_stats st;
    ops->stats(s, &st);
    print_message("delivered %" PRIu64 ", lost %" PRIu64 ", bad %" PRIu64 "\n", st.samples, st.lost,
                  st.bad_records);
    assert_true(st.lost > 0);
    assert_true(st.samples < pages + 64);
    assert_int_equal(st.bad_records, 0);
    munmap(buf, 64 * PAGE);
    ops->close(s);
}

/* The tuner's PERF_EVENT_IOC_PERIOD reaches the kernel: a period of 4
 * turns 400 faults into about 100 samples. */
static void test_real_kernel_period(void **state)
{
    (void)state;
    const struct nt_sampler_ops *ops = &nt_sampler_perf_ops;
    size_t ncpus;
    struct nt_perf_sampler *s = open_page_faults(1, &ncpus);
    if (!s)
        skip();
    struct delivered d = { 0 };
    struct nt_sampler_stats st;
    assert_int_equal(ops->watch(s, getpid()), 0);
    /* A window of 100% CPU against a 1% budget: period 1 -> 8 (the x8 cap). */
    ops->drain(s, 0, 0, on_access, &d);
    const size_t pages = 400;
    uint8_t *buf = map_pages(pages);
    touch_pages(buf, 4);
    ops->drain(s, 2000000, 2000000, on_access, &d);
    ops->stats(s, &st);
    uint64_t period = st.period;
    assert_int_equal(period, 8);
    uint64_t before = st.samples;
    touch_pages(buf + 4 * PAGE, pages - 4);
    ops->drain(s, 2000001, 2000000, on_access, &d);
    ops->stats(s, &st);
    uint64_t got = st.samples - before;
    print_message("period %" PRIu64 ": %" PRIu64 " samples for %zu faults\n", period, got, pages - 4);
    assert_in_range(got, (pages - 4) / period / 2, (pages - 4) / period * 2);
    munmap(buf, pages * PAGE);
    ops->close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_checks),
        cmocka_unit_test(test_normal_samples),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_head_at_boundary),
        cmocka_unit_test(test_wrap_every_offset),
        cmocka_unit_test(test_wrap_other_records),
        cmocka_unit_test(test_lost_and_throttle),
        cmocka_unit_test(test_unknown_types_skipped),
        cmocka_unit_test(test_truncated_records),
        cmocka_unit_test(test_record_beyond_head),
        cmocka_unit_test(test_bad_record_contents),
        cmocka_unit_test(test_impossible_head),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_decode_every_field),
        cmocka_unit_test(test_decode_ours),
        cmocka_unit_test(test_sample_to_access),
        cmocka_unit_test(test_pidset),
        cmocka_unit_test(test_drain_filters_and_counts),
        cmocka_unit_test(test_drain_tunes_period),
        cmocka_unit_test(test_real_kernel_ring),
        cmocka_unit_test(test_real_kernel_lost),
        cmocka_unit_test(test_real_kernel_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
