/* Reading cxl:cxl_general_media / cxl:cxl_dram trace records into the
 * pure decoder's struct nt_cxl_record (policy/cxl-decode.c). Fields are
 * read by name, so any kernel's layout works. See cxl-decode.h. */
#include <errno.h>
#include <string.h>

#include "numatier/cxl-decode.h"
#include "numatier/ras-trace.h"
#include "numatier/util.h"

static int record_kind(const struct nt_trace_format *fmt, enum nt_ras_source *kind)
{
    if (!fmt || !fmt->system || !fmt->name || strcmp(fmt->system, "cxl") != 0)
        return -EINVAL;
    if (strcmp(fmt->name, "cxl_general_media") == 0)
        *kind = NT_RAS_CXL_GENERAL_MEDIA;
    else if (strcmp(fmt->name, "cxl_dram") == 0)
        *kind = NT_RAS_CXL_DRAM;
    else
        return -EINVAL;
    return 0;
}

/* An optional field: 0 when the kernel's format lacks it or it is unreadable. */
static uint64_t opt_u64(const struct nt_ras_record *rec, const char *field)
{
    uint64_t v;
    return nt_ras_record_u64(rec, field, &v) == 0 ? v : 0;
}

static const char *opt_str(const struct nt_ras_record *rec, const char *field)
{
    const char *s;
    return nt_ras_record_str(rec, field, &s) == 0 ? s : NULL;
}

static int required_fields(const struct nt_ras_record *rec, struct nt_cxl_record *out,
                           const char **missing)
{
    static const char *const need[] = { "dpa", "descriptor" };
    uint64_t v[NT_ARRAY_SIZE(need)];
    for (size_t i = 0; i < NT_ARRAY_SIZE(need); i++) {
        if (nt_ras_record_u64(rec, need[i], &v[i]) < 0) {
            if (missing)
                *missing = need[i];
            return -EBADMSG;
        }
    }
    out->dpa = v[0];
    out->descriptor = (uint8_t)v[1];
    return 0;
}

static void optional_fields(const struct nt_ras_record *rec, struct nt_cxl_record *out)
{
    int64_t log;
    out->log = nt_ras_record_s64(rec, "log", &log) == 0 ? (int)log : -1;
    out->memdev = opt_str(rec, "memdev");
    out->region = opt_str(rec, "region_name");
    out->serial = opt_u64(rec, "serial");
    out->hdr_flags = (uint32_t)opt_u64(rec, "hdr_flags");
    out->dpa_flags = (uint8_t)opt_u64(rec, "dpa_flags");
    out->type = (uint8_t)opt_u64(rec, "type");
    out->transaction_type = (uint8_t)opt_u64(rec, "transaction_type");
    out->validity_flags = (uint16_t)opt_u64(rec, "validity_flags");
    out->channel = (uint8_t)opt_u64(rec, "channel");
    out->rank = (uint8_t)opt_u64(rec, "rank");
    out->device = (uint32_t)opt_u64(rec, "device");
    out->bank_group = (uint8_t)opt_u64(rec, "bank_group");
    out->bank = (uint8_t)opt_u64(rec, "bank");
    out->row = (uint32_t)opt_u64(rec, "row");
    out->nibble_mask = (uint32_t)opt_u64(rec, "nibble_mask");
    out->column = (uint16_t)opt_u64(rec, "column");
    out->has_hpa = nt_ras_record_u64(rec, "hpa", &out->hpa) == 0;
    if (!out->has_hpa)
        out->hpa = NT_CXL_HPA_INVALID;
}

int nt_cxl_record_from_trace(const struct nt_ras_record *rec, struct nt_cxl_record *out,
                             const char **missing)
{
    memset(out, 0, sizeof(*out));
    if (missing)
        *missing = NULL;
    if (record_kind(rec->fmt, &out->kind) < 0)
        return -EINVAL;
    int ret = required_fields(rec, out, missing);
    if (ret < 0)
        return ret;
    optional_fields(rec, out);
    return 0;
}

int nt_cxl_decode_trace(const struct nt_ras_record *rec, uint64_t time_usec, struct nt_ras_event *ev,
                        const char **missing)
{
    struct nt_cxl_record r;
    int ret = nt_cxl_record_from_trace(rec, &r, missing);
    if (ret < 0)
        return ret;
    return nt_cxl_decode(&r, time_usec, ev);
}
