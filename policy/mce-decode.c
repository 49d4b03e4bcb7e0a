/* Decoders from raw RAS tracepoint fields to struct nt_ras_event. Pure. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "numatier/strbuf.h"
#include "numatier/ras.h"

#define MISC_ADDR_LSB(m)   ((uint8_t)((m) & 0x3f))
#define MISC_ADDR_MODE(m)  ((unsigned)(((m) >> 6) & 0x7))
#define STATUS_MCACOD(s)   ((uint16_t)((s) & 0xffff))
#define STATUS_MSCOD(s)    ((uint16_t)(((s) >> 16) & 0xffff))

const char *nt_ras_source_name(enum nt_ras_source s)
{
    switch (s) {
    case NT_RAS_MCE: return "mce";
    case NT_RAS_EDAC: return "edac";
    case NT_RAS_MEMORY_FAILURE: return "memory_failure";
    case NT_RAS_CXL_GENERAL_MEDIA: return "cxl_general_media";
    case NT_RAS_CXL_DRAM: return "cxl_dram";
    }
    return "?";
}

const char *nt_ras_severity_name(enum nt_ras_severity s)
{
    switch (s) {
    case NT_RAS_SEV_CORRECTED: return "corrected";
    case NT_RAS_SEV_UNCORRECTED: return "uncorrected";
    case NT_RAS_SEV_DEFERRED: return "deferred";
    case NT_RAS_SEV_FATAL: return "fatal";
    case NT_RAS_SEV_INFO: return "info";
    }
    return "?";
}

const char *nt_mce_class_name(enum nt_mce_class c)
{
    switch (c) {
    case NT_MCE_CLASS_OTHER: return "other";
    case NT_MCE_CLASS_MEMCTRL: return "memory-controller";
    case NT_MCE_CLASS_CACHE: return "cache";
    case NT_MCE_CLASS_GENERIC_CACHE: return "generic-cache";
    case NT_MCE_CLASS_TLB: return "tlb";
    case NT_MCE_CLASS_BUS: return "bus";
    case NT_MCE_CLASS_AMD_UMC: return "amd-umc";
    case NT_MCE_CLASS_AMD_NB_DRAM: return "amd-nb-dram";
    }
    return "?";
}

const char *nt_mce_addr_mode_name(enum nt_mce_addr_mode m)
{
    switch (m) {
    case NT_MCE_ADDR_SEGMENT: return "segment";
    case NT_MCE_ADDR_LINEAR: return "linear";
    case NT_MCE_ADDR_PHYSICAL: return "physical";
    case NT_MCE_ADDR_MEMORY: return "memory";
    case NT_MCE_ADDR_GENERIC: return "generic";
    case NT_MCE_ADDR_UNKNOWN: return "unknown";
    }
    return "reserved";
}

const char *nt_mf_result_name(int result)
{
    switch (result) {
    case NT_MF_IGNORED: return "Ignored";
    case NT_MF_FAILED: return "Failed";
    case NT_MF_DELAYED: return "Delayed";
    case NT_MF_RECOVERED: return "Recovered";
    }
    return "?";
}


#define DETAIL(ev, ...) nt_appendf((ev)->detail, sizeof((ev)->detail), __VA_ARGS__)
#define UNUSABLE(ev, ...) nt_appendf((ev)->why_unusable, sizeof((ev)->why_unusable), __VA_ARGS__)

void nt_ras_event_init(struct nt_ras_event *ev, enum nt_ras_source src, uint64_t time_usec)
{
    memset(ev, 0, sizeof(*ev));
    ev->time_usec = time_usec;
    ev->source = src;
    ev->count = 1;
    ev->cpu = ev->socket = ev->bank = ev->node = -1;
}

/* A human size for a power-of-two grain: "64B", "4K", "2M", "1G". */
static void grain_str(uint64_t grain, char *buf, size_t size)
{
    static const char units[] = "BKMGTPE";
    unsigned u = 0;
    while (grain >= 1024 && grain % 1024 == 0 && u + 1 < sizeof(units) - 1) {
        grain /= 1024;
        u++;
    }
    snprintf(buf, size, "%" PRIu64 "%c", grain, units[u]);
}

/* ---- MCE ---------------------------------------------------------------- */

/* The memory-controller pattern also covers the "generic" 0x009f-like codes
 * Intel iMC banks (and QEMU's injection) report: 1001 1111 is a memory read
 * on an unspecified channel. Same masks as the kernel's mce_is_memory_error(),
 * which however also counts cache errors as memory errors. */
enum nt_mce_class nt_mce_classify(uint16_t mcacod)
{
    uint16_t c = mcacod & 0xefff;       /* bit 12 only filters reporting */
    if ((c & 0xef80) == 0x0080)
        return NT_MCE_CLASS_MEMCTRL;
    if ((c & 0xef00) == 0x0100)
        return NT_MCE_CLASS_CACHE;
    if ((c & 0xeffc) == 0x000c)
        return NT_MCE_CLASS_GENERIC_CACHE;
    if ((c & 0xeff0) == 0x0010)
        return NT_MCE_CLASS_TLB;
    if ((c & 0xe800) == 0x0800)
        return NT_MCE_CLASS_BUS;
    return NT_MCE_CLASS_OTHER;
}

static bool vendor_is_amd(int vendor)
{
    return vendor == NT_X86_VENDOR_AMD || vendor == NT_X86_VENDOR_HYGON;
}

/* AMD encodes DRAM ECC outside MCACOD: by bank type (SMCA, from IPID) and
 * the extended error code, as the kernel's amd_mce_is_memory_error(). */
static enum nt_mce_class amd_classify(const struct nt_mce_record *r)
{
    if (r->ipid) {
        unsigned hwid = (unsigned)((r->ipid >> 32) & 0xfff);
        unsigned mcatype = (unsigned)((r->ipid >> 48) & 0xffff);
        unsigned xec = (unsigned)((r->status >> 16) & 0x3f);
        if (hwid == 0x96 && mcatype <= 1 && xec == 0)     /* UMC, UMC v2 */
            return NT_MCE_CLASS_AMD_UMC;
    } else if (r->bank == 4 && ((r->status >> 16) & 0x1f) == 0x8) {
        return NT_MCE_CLASS_AMD_NB_DRAM;
    }
    return nt_mce_classify(STATUS_MCACOD(r->status));
}

static const char *memctrl_transaction(uint16_t mcacod)
{
    static const char *const names[] = {
        "generic", "read", "write", "address/command", "scrub",
    };
    unsigned mmm = (mcacod >> 4) & 0x7;
    return mmm < sizeof(names) / sizeof(names[0]) ? names[mmm] : "reserved";
}

static void mce_severity(const struct nt_mce_record *r, struct nt_ras_event *ev)
{
    bool uc = r->status & NT_MCI_STATUS_UC;
    if (!uc)
        ev->severity = NT_RAS_SEV_CORRECTED;
    else if (vendor_is_amd(ev->u.mce.vendor) && (r->status & NT_MCI_STATUS_DEFERRED))
        ev->severity = NT_RAS_SEV_DEFERRED;
    else if (r->status & NT_MCI_STATUS_PCC)
        ev->severity = NT_RAS_SEV_FATAL;
    else
        ev->severity = NT_RAS_SEV_UNCORRECTED;
    ev->corrected = ev->severity == NT_RAS_SEV_CORRECTED;
}

/* Intel-style address rules; see nt_mce_decode() in ras.h. */
static void mce_address_intel(const struct nt_mce_record *r, struct nt_ras_event *ev)
{
    if (!(r->status & NT_MCI_STATUS_MISCV)) {
        UNUSABLE(ev, "MISCV clear: address mode unknown");
        return;
    }
    ev->u.mce.addr_mode = (enum nt_mce_addr_mode)MISC_ADDR_MODE(r->misc);
    ev->u.mce.addr_lsb = MISC_ADDR_LSB(r->misc);
    if (ev->u.mce.addr_mode != NT_MCE_ADDR_PHYSICAL) {
        UNUSABLE(ev, "MISC address mode %s (%u), not physical",
                 nt_mce_addr_mode_name(ev->u.mce.addr_mode), MISC_ADDR_MODE(r->misc));
        return;
    }
    /* The CPU's LSB is at most 63 (6 bits); 56+ would exceed any physical
     * address, so such a record is malformed rather than coarse. */
    if (ev->u.mce.addr_lsb > 55) {
        UNUSABLE(ev, "MISC address LSB %u out of range", ev->u.mce.addr_lsb);
        return;
    }
    ev->grain_bytes = UINT64_C(1) << ev->u.mce.addr_lsb;
    ev->phys_addr = r->addr & ~(ev->grain_bytes - 1);
    ev->addr_valid = true;
}

static void mce_address(const struct nt_mce_record *r, struct nt_ras_event *ev)
{
    ev->u.mce.addr_mode = NT_MCE_ADDR_UNKNOWN;
    if (!(r->status & NT_MCI_STATUS_VAL)) {
        UNUSABLE(ev, "VAL clear: not a valid error record");
        return;
    }
    if (!(r->status & NT_MCI_STATUS_ADDRV)) {
        UNUSABLE(ev, "ADDRV clear: no address");
        return;
    }
    if (vendor_is_amd(ev->u.mce.vendor)) {
        if (r->ipid)
            ev->u.mce.addr_lsb = (uint8_t)((r->addr >> 56) & 0x3f);
        UNUSABLE(ev, "AMD MCA address is not a system physical address; use EDAC");
        return;
    }
    mce_address_intel(r, ev);
}

static void mce_detail(const struct nt_mce_record *r, struct nt_ras_event *ev)
{
    DETAIL(ev, "MCE %s %s", nt_ras_severity_name(ev->severity), nt_mce_class_name(ev->u.mce.class_));
    if (ev->u.mce.class_ == NT_MCE_CLASS_MEMCTRL) {
        unsigned ch = ev->mcacod & 0xf;
        DETAIL(ev, " %s", memctrl_transaction(ev->mcacod));
        if (ch == 0xf)
            DETAIL(ev, " channel ?");
        else
            DETAIL(ev, " channel %u", ch);
    }
    DETAIL(ev, " mcacod 0x%04x mscod 0x%04x bank %u cpu %u socket %u",
           ev->mcacod, ev->u.mce.mscod, r->bank, r->cpu, r->socketid);
    if (ev->addr_valid) {
        char g[24];
        grain_str(ev->grain_bytes, g, sizeof(g));
        DETAIL(ev, " addr 0x%" PRIx64 "/%s", ev->phys_addr, g);
    } else if (r->status & NT_MCI_STATUS_ADDRV) {
        DETAIL(ev, " addr 0x%" PRIx64 " (unusable)", r->addr);
    }
    if (ev->u.mce.overflow)
        DETAIL(ev, " OVER");
}

int nt_mce_decode(const struct nt_mce_record *r, uint64_t time_usec, struct nt_ras_event *ev)
{
    nt_ras_event_init(ev, NT_RAS_MCE, time_usec);
    ev->cpu = (int)r->cpu;
    ev->socket = (int)r->socketid;
    ev->bank = r->bank;
    ev->mcacod = STATUS_MCACOD(r->status);
    ev->u.mce.status = r->status;
    ev->u.mce.misc = r->misc;
    ev->u.mce.addr = r->addr;
    ev->u.mce.mcgstatus = r->mcgstatus;
    ev->u.mce.ipid = r->ipid;
    ev->u.mce.mscod = STATUS_MSCOD(r->status);
    ev->u.mce.vendor = r->cpuvendor;
    ev->u.mce.overflow = r->status & NT_MCI_STATUS_OVER;
    ev->u.mce.pcc = r->status & NT_MCI_STATUS_PCC;
    ev->u.mce.class_ = vendor_is_amd(r->cpuvendor) ? amd_classify(r) : nt_mce_classify(ev->mcacod);
    /* Only DRAM errors say anything about a frame: a corrected cache or bus
     * error at an address is not a failing DIMM cell. */
    ev->memory_error = ev->u.mce.class_ == NT_MCE_CLASS_MEMCTRL ||
                       ev->u.mce.class_ == NT_MCE_CLASS_AMD_UMC ||
                       ev->u.mce.class_ == NT_MCE_CLASS_AMD_NB_DRAM;
    mce_severity(r, ev);
    mce_address(r, ev);
    mce_detail(r, ev);
    return (r->status & NT_MCI_STATUS_VAL) ? 0 : -EINVAL;
}

/* ---- EDAC ras:mc_event -------------------------------------------------- */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static void edac_address(const struct nt_edac_record *r, struct nt_ras_event *ev)
{
    if (r->grain_bits > 55) {
        UNUSABLE(ev, "EDAC grain_bits %u out of range", r->grain_bits);
        return;
    }
    ev->grain_bytes = UINT64_C(1) << r->grain_bits;
    if (r->address == 0) {
        UNUSABLE(ev, "EDAC driver gave no address");
        return;
    }
    ev->phys_addr = r->address & ~(ev->grain_bytes - 1);
    ev->addr_valid = true;
}

int nt_edac_decode(const struct nt_edac_record *r, uint64_t time_usec, struct nt_ras_event *ev)
{
    nt_ras_event_init(ev, NT_RAS_EDAC, time_usec);
    ev->severity = r->error_type <= NT_RAS_SEV_INFO ? (enum nt_ras_severity)r->error_type
                                                    : NT_RAS_SEV_INFO;
    ev->corrected = ev->severity == NT_RAS_SEV_CORRECTED;
    ev->count = r->error_count ? r->error_count : 1;
    /* EDAC reports only memory-controller errors. */
    ev->memory_error = true;
    ev->u.edac.mc_index = r->mc_index;
    ev->u.edac.layer[0] = r->top_layer;
    ev->u.edac.layer[1] = r->middle_layer;
    ev->u.edac.layer[2] = r->lower_layer;
    ev->u.edac.syndrome = r->syndrome;
    snprintf(ev->u.edac.label, sizeof(ev->u.edac.label), "%s", str_or_empty(r->label));
    edac_address(r, ev);

    DETAIL(ev, "EDAC %s x%u mc %d layers %d:%d:%d",
           nt_ras_severity_name(ev->severity), ev->count, r->mc_index,
           r->top_layer, r->middle_layer, r->lower_layer);
    if (ev->addr_valid) {
        char g[24];
        grain_str(ev->grain_bytes, g, sizeof(g));
        DETAIL(ev, " addr 0x%" PRIx64 "/%s", ev->phys_addr, g);
    }
    if (ev->u.edac.label[0])
        DETAIL(ev, " dimm %s", ev->u.edac.label);
    if (r->msg && r->msg[0])
        DETAIL(ev, ": %s", r->msg);
    return 0;
}

/* ---- ras:memory_failure_event ------------------------------------------- */

int nt_memfail_decode(const struct nt_memfail_record *r, uint64_t time_usec, struct nt_ras_event *ev)
{
    nt_ras_event_init(ev, NT_RAS_MEMORY_FAILURE, time_usec);
    ev->severity = NT_RAS_SEV_UNCORRECTED;
    ev->memory_error = true;
    ev->u.mf.pfn = r->pfn;
    ev->u.mf.type = r->type;
    ev->u.mf.result = r->result;
    if (r->pfn > (UINT64_MAX >> NT_RAS_PAGE_SHIFT)) {
        UNUSABLE(ev, "pfn 0x%" PRIx64 " out of range", r->pfn);
    } else {
        ev->phys_addr = r->pfn << NT_RAS_PAGE_SHIFT;
        ev->grain_bytes = NT_RAS_PAGE_SIZE;
        ev->addr_valid = true;
    }
    DETAIL(ev, "memory_failure pfn 0x%" PRIx64 " ", r->pfn);
    if (r->type_name && r->type_name[0])
        DETAIL(ev, "%s", r->type_name);
    else
        DETAIL(ev, "type %d", r->type);
    DETAIL(ev, ": %s", nt_mf_result_name(r->result));
    return 0;
}
