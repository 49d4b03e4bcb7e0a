/* Memory-error (RAS) events: the one decoded form every source maps to, and
 * the decoders from the raw tracepoint fields (policy/mce-decode.c, pure).
 *
 * The tracefs reader parses each event's `format` file and fills one of the
 * plain nt_*_record structs below; a field the running kernel lacks stays 0
 * (or the "unknown" value its comment names). The decoders turn a record into
 * a struct nt_ras_event. They never fail on odd input: an event whose address
 * cannot be trusted keeps addr_valid/why_unusable saying so, and is recorded
 * but never acted on. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NT_RAS_PAGE_SHIFT 12
#define NT_RAS_PAGE_SIZE  (UINT64_C(1) << NT_RAS_PAGE_SHIFT)

enum nt_ras_source {
    NT_RAS_MCE,                 /* mce:mce_record */
    NT_RAS_EDAC,                /* ras:mc_event */
    NT_RAS_MEMORY_FAILURE,      /* ras:memory_failure_event (the kernel poisoned a frame) */
    NT_RAS_CXL_GENERAL_MEDIA,   /* cxl:cxl_general_media */
    NT_RAS_CXL_DRAM,            /* cxl:cxl_dram */
};

/* The kernel's HW_EVENT_ERR_* order (include/linux/edac.h), which EDAC's
 * error_type carries as is. */
enum nt_ras_severity {
    NT_RAS_SEV_CORRECTED = 0,
    NT_RAS_SEV_UNCORRECTED = 1,
    NT_RAS_SEV_DEFERRED = 2,    /* uncorrected, not yet consumed (AMD) */
    NT_RAS_SEV_FATAL = 3,
    NT_RAS_SEV_INFO = 4,
};

/* x86 MCA compound error classes (Intel SDM vol. 3B, "Compound Error Codes"). */
enum nt_mce_class {
    NT_MCE_CLASS_OTHER,         /* simple error codes, unclassified */
    NT_MCE_CLASS_MEMCTRL,       /* 0000 0000 1MMM CCCC: memory controller (DRAM) */
    NT_MCE_CLASS_CACHE,         /* 0000 0001 RRRR TTLL: cache hierarchy */
    NT_MCE_CLASS_GENERIC_CACHE, /* 0000 0000 0000 11LL */
    NT_MCE_CLASS_TLB,           /* 0000 0000 0001 TTLL */
    NT_MCE_CLASS_BUS,           /* 0000 1PPT RRRR IILL: bus and interconnect */
    NT_MCE_CLASS_AMD_UMC,       /* AMD SMCA unified memory controller, DRAM ECC */
    NT_MCE_CLASS_AMD_NB_DRAM,   /* AMD pre-SMCA northbridge (bank 4) DRAM ECC */
};

/* IA32_MCi_MISC bits 8:6 (valid with MISCV). Only physical is usable. */
enum nt_mce_addr_mode {
    NT_MCE_ADDR_SEGMENT = 0,
    NT_MCE_ADDR_LINEAR = 1,
    NT_MCE_ADDR_PHYSICAL = 2,
    NT_MCE_ADDR_MEMORY = 3,     /* memory address, not yet a system physical address */
    NT_MCE_ADDR_GENERIC = 7,
    NT_MCE_ADDR_UNKNOWN = 0xff, /* MISCV clear, or MISC has no such field (AMD) */
};

/* The kernel's X86_VENDOR_* values, as mce_record's cpuvendor carries them. */
enum {
    NT_X86_VENDOR_INTEL = 0,
    NT_X86_VENDOR_AMD = 2,
    NT_X86_VENDOR_CENTAUR = 5,
    NT_X86_VENDOR_HYGON = 9,
    NT_X86_VENDOR_ZHAOXIN = 10,
    NT_X86_VENDOR_UNKNOWN = -1, /* the kernel's format has no cpuvendor field */
};

struct nt_ras_event {
    uint64_t time_usec;         /* CLOCK_REALTIME: events and frame states outlive boots */
    enum nt_ras_source source;
    enum nt_ras_severity severity;
    bool corrected;             /* severity == NT_RAS_SEV_CORRECTED */
    uint32_t count;             /* errors this event reports, >= 1 (EDAC error_count) */
    bool addr_valid;            /* phys_addr names the failing memory; see why_unusable */
    uint64_t phys_addr;         /* masked down to grain_bytes */
    uint64_t grain_bytes;       /* the address is known to this granularity (a power of 2) */
    int cpu, socket, bank;      /* -1 unknown or not applicable */
    uint16_t mcacod;            /* MCE: IA32_MCi_STATUS bits 15:0 */
    bool memory_error;          /* a DRAM error (not a cache, TLB or bus error) */
    int node;                   /* -1 unknown: the decoders leave it; the caller maps the address */
    char detail[160];           /* human summary, for the ledger and the journal */
    char why_unusable[96];      /* why no action can be taken on the address; "" if usable */
    union {
        struct {
            uint64_t status, misc, addr, mcgstatus, ipid;
            uint16_t mscod;     /* status bits 31:16, model-specific */
            int vendor;         /* NT_X86_VENDOR_* */
            enum nt_mce_class class_;
            enum nt_mce_addr_mode addr_mode;
            uint8_t addr_lsb;   /* MISC bits 5:0 (SMCA: ADDR bits 61:56); 0 unknown */
            bool overflow, pcc;
        } mce;
        struct {
            int mc_index, layer[3];
            uint64_t syndrome;
            char label[64];     /* the DIMM label, "" unknown */
        } edac;
        struct {
            uint64_t pfn;
            int type, result;   /* the kernel's enum mf_action_page_type / mf_result */
        } mf;
        struct {                /* cxl_general_media, cxl_dram: see cxl-decode.h */
            uint64_t dpa, hpa, serial;  /* hpa NT_CXL_HPA_INVALID: none */
            uint32_t hdr_flags;
            uint16_t validity_flags;
            uint8_t descriptor, type, transaction_type, dpa_flags;
            int log;
            int channel, rank;          /* -1 not valid */
            int device;                 /* general media; -1 not valid */
            int bank_group, bank, row, column;  /* dram; -1 not valid */
            char memdev[32], region[32];        /* "" unknown / none */
        } cxl;
    } u;
};

/* usable: the event names a physical address a policy may act on. */
static inline bool nt_ras_event_usable(const struct nt_ras_event *ev)
{
    return ev->addr_valid && ev->why_unusable[0] == '\0';
}

/* "mce", "edac", "memory_failure", "cxl_general_media", "cxl_dram"; "?" else. */
/* An empty event of src at time_usec: count 1, cpu/socket/bank/node -1. */
void nt_ras_event_init(struct nt_ras_event *ev, enum nt_ras_source src, uint64_t time_usec);
const char *nt_ras_source_name(enum nt_ras_source s);
/* "corrected", "uncorrected", "deferred", "fatal", "info"; "?" else. */
const char *nt_ras_severity_name(enum nt_ras_severity s);
/* "memory-controller", "cache", "generic-cache", "tlb", "bus", "amd-umc", "amd-nb-dram", "other". */
const char *nt_mce_class_name(enum nt_mce_class c);
/* "segment", "linear", "physical", "memory", "generic", "unknown", "reserved". */
const char *nt_mce_addr_mode_name(enum nt_mce_addr_mode m);

/* ---- mce:mce_record ---------------------------------------------------- */

/* IA32_MCi_STATUS bits. */
#define NT_MCI_STATUS_VAL    (UINT64_C(1) << 63)
#define NT_MCI_STATUS_OVER   (UINT64_C(1) << 62)
#define NT_MCI_STATUS_UC     (UINT64_C(1) << 61)
#define NT_MCI_STATUS_EN     (UINT64_C(1) << 60)
#define NT_MCI_STATUS_MISCV  (UINT64_C(1) << 59)
#define NT_MCI_STATUS_ADDRV  (UINT64_C(1) << 58)
#define NT_MCI_STATUS_PCC    (UINT64_C(1) << 57)
#define NT_MCI_STATUS_DEFERRED (UINT64_C(1) << 44)   /* AMD */

/* The fields of mce:mce_record (arch/x86 trace/mce.h) a decoder may use. */
struct nt_mce_record {
    uint64_t mcgcap, mcgstatus, status, addr, misc, synd, ipid, ip, tsc, ppin, walltime;
    uint32_t cpu, cpuid, apicid, socketid, microcode;
    uint8_t cs, bank;
    int cpuvendor;              /* NT_X86_VENDOR_*; NT_X86_VENDOR_UNKNOWN if absent */
};

/* Decode one MCE. Returns 0, or -EINVAL when VAL is clear (ev is still
 * filled, marked unusable, so the caller can count and record it).
 *
 * The address is usable only when ADDRV is set and:
 *   - Intel-style MCA (Intel, Zhaoxin, Centaur, or vendor unknown): MISCV is
 *     set and MISC bits 8:6 say physical; MISC bits 5:0 (LSB) give the grain
 *     1 << LSB and the address is masked to it. Without MISCV the mode is
 *     unknown (it could be linear or segment-relative), so the address is
 *     unusable -- as the kernel's mce_usable_address() decides; a guessed
 *     4 KiB physical address could offline an innocent frame.
 *   - AMD/Hygon: SMCA UMC addresses are normalised DRAM addresses that need
 *     the data fabric's translation, which mce_record does not carry, so
 *     they are unusable here; amd64_edac reports the system address of the
 *     same error through ras:mc_event. Pre-SMCA bank 4 addresses are
 *     physical but carry no granularity, so they are unusable too.
 * An LSB above 12 leaves the address usable but coarser than a frame; the
 * ECC policy then records it without acting (see ecc.h). */
int nt_mce_decode(const struct nt_mce_record *r, uint64_t time_usec, struct nt_ras_event *ev);

/* The compound-error class of an MCACOD (bit 12, the filter bit, ignored). */
enum nt_mce_class nt_mce_classify(uint16_t mcacod);

/* ---- ras:mc_event (EDAC) ----------------------------------------------- */

struct nt_edac_record {
    uint32_t error_type;        /* HW_EVENT_ERR_*: see enum nt_ras_severity */
    uint32_t error_count;       /* 0 is read as 1 */
    int mc_index;
    int top_layer, middle_layer, lower_layer;   /* -1 unknown */
    uint64_t address;           /* (page_frame_number << PAGE_SHIFT) | offset_in_page; 0 unknown */
    uint32_t grain_bits;        /* grain = 1 << grain_bits */
    uint64_t syndrome;
    const char *msg, *label, *driver_detail;    /* NULL or "" when absent */
};

/* Decode one EDAC event; returns 0. Address 0 means the driver did not know
 * it (page 0 is never handed out on x86 anyway), so it is unusable. */
int nt_edac_decode(const struct nt_edac_record *r, uint64_t time_usec, struct nt_ras_event *ev);

/* ---- ras:memory_failure_event ------------------------------------------ */

/* The kernel's enum mf_result (stable across kernels). */
enum { NT_MF_IGNORED, NT_MF_FAILED, NT_MF_DELAYED, NT_MF_RECOVERED };

struct nt_memfail_record {
    uint64_t pfn;
    int type;                   /* enum mf_action_page_type: its order changes between kernels */
    int result;                 /* NT_MF_* */
    const char *type_name;      /* from the format's print fmt symbol table; NULL unknown */
};

/* Decode one memory_failure_event: an uncorrected-class record of a frame
 * the kernel has already poisoned. The address is valid (a whole frame);
 * the ECC policy records it and marks the frame poisoned. Returns 0. */
int nt_memfail_decode(const struct nt_memfail_record *r, uint64_t time_usec, struct nt_ras_event *ev);

/* "Ignored", "Failed", "Delayed", "Recovered"; "?" else. */
const char *nt_mf_result_name(int result);
