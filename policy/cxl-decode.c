/* CXL media-error decoder: cxl_general_media / cxl_dram -> struct
 * nt_ras_event. See cxl-decode.h. Pure; the tracefs glue that fills
 * struct nt_cxl_record from a record is daemon/cxl-trace.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "numatier/cxl-decode.h"
#include "numatier/strbuf.h"
#include "numatier/util.h"

#define DETAIL(ev, ...) nt_appendf((ev)->detail, sizeof((ev)->detail), __VA_ARGS__)
#define UNUSABLE(ev, ...) nt_appendf((ev)->why_unusable, sizeof((ev)->why_unusable), __VA_ARGS__)

static const char *name_at(const char *const *names, size_t n, unsigned i)
{
    return i < n && names[i] ? names[i] : "?";
}

const char *nt_cxl_log_name(int log)
{
    static const char *const names[] = { "Informational", "Warning", "Failure", "Fatal" };
    return log < 0 ? "?" : name_at(names, NT_ARRAY_SIZE(names), (unsigned)log);
}

const char *nt_cxl_type_name(enum nt_ras_source kind, uint8_t type)
{
    static const char *const gm[] = {
        "ECC Error", "Invalid Address", "Data Path Error", "TE State Violation",
        "Scrub Media ECC Error", "CME Counter Expiration", "CKID Violation",
    };
    static const char *const dram[] = {
        "ECC Error", "Scrub Media ECC Error", "Invalid Address", "Data Path Error",
        "TE State Violation", "CME Counter Expiration", "CKID Violation",
    };
    if (kind == NT_RAS_CXL_DRAM)
        return name_at(dram, NT_ARRAY_SIZE(dram), type);
    if (kind == NT_RAS_CXL_GENERAL_MEDIA)
        return name_at(gm, NT_ARRAY_SIZE(gm), type);
    return "?";
}

const char *nt_cxl_transaction_name(uint8_t transaction_type)
{
    static const char *const names[] = {
        "Unknown", "Host Read", "Host Write", "Host Scan Media", "Host Inject Poison",
        "Internal Media Scrub", "Internal Media Management", "Internal Media ECS",
        "Media Initialization",
    };
    return name_at(names, NT_ARRAY_SIZE(names), transaction_type);
}

/* ---- decoding --------------------------------------------------------------- */

static bool is_cxl_kind(enum nt_ras_source kind)
{
    return kind == NT_RAS_CXL_GENERAL_MEDIA || kind == NT_RAS_CXL_DRAM;
}

/* A failing cell shows up as an ECC error, found by an access or by the
 * device's scrubber. The other types (an access to an invalid address, a
 * data-path or security violation, a counter expiring) name no bad cell. */
static bool is_media_ecc(enum nt_ras_source kind, uint8_t type)
{
    if (kind == NT_RAS_CXL_DRAM)
        return type == NT_CXL_DRAM_ECC_ERROR || type == NT_CXL_DRAM_SCRUB_MEDIA_ECC_ERROR;
    return type == NT_CXL_GM_ECC_ERROR || type == NT_CXL_GM_SCRUB_MEDIA_ECC_ERROR;
}

static enum nt_ras_severity cxl_severity(const struct nt_cxl_record *r)
{
    if (!(r->descriptor & NT_CXL_DESC_UNCORRECTABLE))
        return NT_RAS_SEV_CORRECTED;
    return r->log == NT_CXL_LOG_FATAL ? NT_RAS_SEV_FATAL : NT_RAS_SEV_UNCORRECTED;
}

/* The DPA is an offset inside one device: only the kernel's translation
 * through a region (hpa) names a host frame. */
static void cxl_address(const struct nt_cxl_record *r, struct nt_ras_event *ev)
{
    ev->grain_bytes = NT_CXL_GRAIN_BYTES;
    if (!r->has_hpa) {
        UNUSABLE(ev, "the kernel reports only the device address (no hpa field before 6.9)");
        return;
    }
    if (r->hpa == NT_CXL_HPA_INVALID) {
        UNUSABLE(ev, "DPA 0x%" PRIx64 " is in no CXL region: no host address", r->dpa);
        return;
    }
    ev->phys_addr = r->hpa & ~(NT_CXL_GRAIN_BYTES - 1);
    ev->addr_valid = true;
}

static int valid_or_unknown(bool valid, uint64_t v)
{
    return valid && v <= INT32_MAX ? (int)v : -1;
}

static void cxl_location(const struct nt_cxl_record *r, struct nt_ras_event *ev)
{
    uint16_t vf = r->validity_flags;
    bool dram = r->kind == NT_RAS_CXL_DRAM;
    ev->u.cxl.channel = valid_or_unknown(vf & NT_CXL_VALID_CHANNEL, r->channel);
    ev->u.cxl.rank = valid_or_unknown(vf & NT_CXL_VALID_RANK, r->rank);
    ev->u.cxl.device = valid_or_unknown(!dram && (vf & NT_CXL_GM_VALID_DEVICE), r->device);
    ev->u.cxl.bank_group = valid_or_unknown(dram && (vf & NT_CXL_DRAM_VALID_BANK_GROUP), r->bank_group);
    ev->u.cxl.bank = valid_or_unknown(dram && (vf & NT_CXL_DRAM_VALID_BANK), r->bank);
    ev->u.cxl.row = valid_or_unknown(dram && (vf & NT_CXL_DRAM_VALID_ROW), r->row);
    ev->u.cxl.column = valid_or_unknown(dram && (vf & NT_CXL_DRAM_VALID_COLUMN), r->column);
}

static void cxl_fields(const struct nt_cxl_record *r, struct nt_ras_event *ev)
{
    ev->u.cxl.dpa = r->dpa;
    ev->u.cxl.hpa = r->has_hpa ? r->hpa : NT_CXL_HPA_INVALID;
    ev->u.cxl.serial = r->serial;
    ev->u.cxl.hdr_flags = r->hdr_flags;
    ev->u.cxl.validity_flags = r->validity_flags;
    ev->u.cxl.descriptor = r->descriptor;
    ev->u.cxl.type = r->type;
    ev->u.cxl.transaction_type = r->transaction_type;
    ev->u.cxl.dpa_flags = r->dpa_flags;
    ev->u.cxl.log = r->log;
    snprintf(ev->u.cxl.memdev, sizeof(ev->u.cxl.memdev), "%s", r->memdev ? r->memdev : "");
    snprintf(ev->u.cxl.region, sizeof(ev->u.cxl.region), "%s", r->region ? r->region : "");
    cxl_location(r, ev);
}

static void detail_flags(const struct nt_cxl_record *r, struct nt_ras_event *ev)
{
    if (r->descriptor & NT_CXL_DESC_THRESHOLD)
        DETAIL(ev, " threshold");
    if (r->descriptor & NT_CXL_DESC_POISON_OVERFLOW)
        DETAIL(ev, " poison-list-overflow");
    if (r->hdr_flags & NT_CXL_HDR_PERMANENT)
        DETAIL(ev, " permanent");
    if (r->hdr_flags & NT_CXL_HDR_MAINTENANCE_NEEDED)
        DETAIL(ev, " maintenance-needed");
    if (r->hdr_flags & NT_CXL_HDR_PERFORMANCE_DEGRADED)
        DETAIL(ev, " degraded");
    if (r->hdr_flags & NT_CXL_HDR_REPLACEMENT_NEEDED)
        DETAIL(ev, " replace-device");
}

static void detail_location(struct nt_ras_event *ev)
{
    const __typeof__(ev->u.cxl) *c = &ev->u.cxl;
    if (c->channel >= 0)
        DETAIL(ev, " ch %d", c->channel);
    if (c->rank >= 0)
        DETAIL(ev, " rank %d", c->rank);
    if (c->device >= 0)
        DETAIL(ev, " dev 0x%x", (unsigned)c->device);
    if (c->bank_group >= 0)
        DETAIL(ev, " bg %d", c->bank_group);
    if (c->bank >= 0)
        DETAIL(ev, " bank %d", c->bank);
    if (c->row >= 0)
        DETAIL(ev, " row %d", c->row);
    if (c->column >= 0)
        DETAIL(ev, " col %d", c->column);
}

/* Most telling first: a long record loses its tail to the 160-byte buffer. */
static void cxl_detail(const struct nt_cxl_record *r, struct nt_ras_event *ev)
{
    DETAIL(ev, "%s %s %s", nt_ras_source_name(r->kind), nt_ras_severity_name(ev->severity),
           nt_cxl_type_name(r->kind, r->type));
    if (r->transaction_type)
        DETAIL(ev, " (%s)", nt_cxl_transaction_name(r->transaction_type));
    DETAIL(ev, " %s dpa 0x%" PRIx64, ev->u.cxl.memdev[0] ? ev->u.cxl.memdev : "mem?", r->dpa);
    if (ev->addr_valid)
        DETAIL(ev, " hpa 0x%" PRIx64 "/64B", ev->phys_addr);
    if (ev->u.cxl.region[0])
        DETAIL(ev, " %s", ev->u.cxl.region);
    detail_flags(r, ev);
    detail_location(ev);
    if (r->serial)
        DETAIL(ev, " serial 0x%" PRIx64, r->serial);
}

int nt_cxl_decode(const struct nt_cxl_record *r, uint64_t time_usec, struct nt_ras_event *ev)
{
    nt_ras_event_init(ev, r->kind, time_usec);
    if (!is_cxl_kind(r->kind)) {
        UNUSABLE(ev, "not a CXL media event (source %d)", (int)r->kind);
        DETAIL(ev, "CXL: unknown record kind");
        return -EINVAL;
    }
    ev->severity = cxl_severity(r);
    ev->corrected = ev->severity == NT_RAS_SEV_CORRECTED;
    ev->memory_error = is_media_ecc(r->kind, r->type);
    cxl_fields(r, ev);
    cxl_address(r, ev);
    cxl_detail(r, ev);
    return 0;
}
