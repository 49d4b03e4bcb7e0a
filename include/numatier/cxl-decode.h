/* CXL memory-device media errors: cxl:cxl_general_media and cxl:cxl_dram
 * (drivers/cxl/core/trace.h) decoded into struct nt_ras_event
 * (policy/cxl-decode.c, pure).
 *
 * A CXL memory device reports a media error by the device physical address
 * (DPA) of a 64-byte line on that device. Since 6.9 the kernel adds the host
 * physical address (hpa) of the CXL region the DPA is mapped into, or
 * ULLONG_MAX when no region maps it. Only the hpa names a frame the host can
 * act on, so an event without one is recorded but never acted on.
 *
 * Field meanings are the CXL 3.x General Media / DRAM Event Records
 * (CXL 3.1 section 8.2.9.2.1.1-2) as the kernel copies them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "numatier/ras.h"

struct nt_ras_record;

/* The kernel's hpa when no CXL region maps the DPA (cxl_event_trace_record()). */
#define NT_CXL_HPA_INVALID UINT64_MAX
/* Media records address one 64-byte line: the kernel masks dpa to 63:6. */
#define NT_CXL_GRAIN_BYTES UINT64_C(64)

/* The event log the record came from: the kernel's enum cxl_event_log_type. */
enum nt_cxl_log {
    NT_CXL_LOG_INFO = 0,
    NT_CXL_LOG_WARN = 1,
    NT_CXL_LOG_FAIL = 2,
    NT_CXL_LOG_FATAL = 3,
};

/* Memory Event Descriptor. */
#define NT_CXL_DESC_UNCORRECTABLE   (1u << 0)
#define NT_CXL_DESC_THRESHOLD       (1u << 1)   /* the device's own error threshold was crossed */
#define NT_CXL_DESC_POISON_OVERFLOW (1u << 2)   /* the device's poison list overflowed */

/* Memory Event Type, General Media record. */
enum {
    NT_CXL_GM_ECC_ERROR = 0x00,
    NT_CXL_GM_INVALID_ADDRESS = 0x01,
    NT_CXL_GM_DATA_PATH_ERROR = 0x02,
    NT_CXL_GM_TE_STATE_VIOLATION = 0x03,        /* CXL 3.1 types from here */
    NT_CXL_GM_SCRUB_MEDIA_ECC_ERROR = 0x04,
    NT_CXL_GM_CME_COUNTER_EXPIRED = 0x05,
    NT_CXL_GM_CKID_VIOLATION = 0x06,
};

/* Memory Event Type, DRAM record: a different order from General Media. */
enum {
    NT_CXL_DRAM_ECC_ERROR = 0x00,
    NT_CXL_DRAM_SCRUB_MEDIA_ECC_ERROR = 0x01,
    NT_CXL_DRAM_INVALID_ADDRESS = 0x02,
    NT_CXL_DRAM_DATA_PATH_ERROR = 0x03,
    NT_CXL_DRAM_TE_STATE_VIOLATION = 0x04,      /* CXL 3.1 types from here */
    NT_CXL_DRAM_CME_COUNTER_EXPIRED = 0x05,
    NT_CXL_DRAM_CKID_VIOLATION = 0x06,
};

/* Validity Flags: which location fields carry a value. */
#define NT_CXL_VALID_CHANNEL      (1u << 0)
#define NT_CXL_VALID_RANK         (1u << 1)
#define NT_CXL_GM_VALID_DEVICE    (1u << 2)
#define NT_CXL_DRAM_VALID_NIBBLE  (1u << 2)
#define NT_CXL_DRAM_VALID_BANK_GROUP (1u << 3)
#define NT_CXL_DRAM_VALID_BANK    (1u << 4)
#define NT_CXL_DRAM_VALID_ROW     (1u << 5)
#define NT_CXL_DRAM_VALID_COLUMN  (1u << 6)

/* Event Record Flags (hdr_flags) worth telling an operator. */
#define NT_CXL_HDR_PERMANENT            (1u << 2)
#define NT_CXL_HDR_MAINTENANCE_NEEDED   (1u << 3)
#define NT_CXL_HDR_PERFORMANCE_DEGRADED (1u << 4)
#define NT_CXL_HDR_REPLACEMENT_NEEDED   (1u << 5)

/* The fields of one cxl_general_media or cxl_dram event a decoder uses. */
struct nt_cxl_record {
    enum nt_ras_source kind;    /* NT_RAS_CXL_GENERAL_MEDIA or NT_RAS_CXL_DRAM */
    const char *memdev;         /* "mem0"; NULL or "" unknown */
    const char *region;         /* "region0"; "" when no region maps the DPA */
    uint64_t serial;            /* the device's serial number */
    int log;                    /* enum nt_cxl_log */
    uint32_t hdr_flags;         /* NT_CXL_HDR_* */
    uint64_t dpa;               /* device physical address, 64-byte aligned */
    uint8_t dpa_flags, descriptor, type, transaction_type;
    uint16_t validity_flags;    /* NT_CXL_VALID_*: which of the fields below hold values */
    uint8_t channel, rank;
    bool has_hpa;               /* the kernel's format has hpa (6.9 and later) */
    uint64_t hpa;               /* NT_CXL_HPA_INVALID: no region maps the DPA */
    uint32_t device;            /* general media: the failing device within the rank */
    uint8_t bank_group, bank;   /* dram */
    uint32_t row, nibble_mask;  /* dram */
    uint16_t column;            /* dram */
};

/* Decode one CXL media event. Corrected means the descriptor's
 * UNCORRECTABLE bit is clear; an uncorrectable one is uncorrected, or fatal
 * when it came through the Fatal log. Only ECC errors (ECC Error, Scrub
 * Media ECC Error) are memory errors: an invalid address, a data-path error
 * or an access violation says nothing about a failing cell. The address is
 * usable when the kernel gave an hpa: it is masked to 64 bytes, the grain.
 * Returns 0, or -EINVAL when r->kind is not a CXL source (ev is still
 * filled, marked unusable). */
int nt_cxl_decode(const struct nt_cxl_record *r, uint64_t time_usec, struct nt_ras_event *ev);

/* "Informational", "Warning", "Failure", "Fatal"; "?" else. */
const char *nt_cxl_log_name(int log);
/* The Memory Event Type's name for the record kind; "?" unknown. */
const char *nt_cxl_type_name(enum nt_ras_source kind, uint8_t type);
/* "Unknown", "Host Read", ..., "Internal Media Management"; "?" else. */
const char *nt_cxl_transaction_name(uint8_t transaction_type);

/* ---- from a tracefs record (daemon/cxl-trace.c, not pure) ---------------- */

/* Fill *out from a cxl:cxl_general_media or cxl:cxl_dram record, reading
 * fields by name so any kernel's layout works. The strings point into the
 * record (valid during the record callback). Returns 0; -EINVAL when the
 * record is not one of those events; -EBADMSG when a field the decoder
 * cannot do without (dpa, descriptor) is missing or cut off, with *missing
 * (may be NULL) naming it. A missing hpa field is has_hpa false; other
 * missing fields stay 0. */
int nt_cxl_record_from_trace(const struct nt_ras_record *rec, struct nt_cxl_record *out,
                             const char **missing);

/* nt_cxl_record_from_trace() then nt_cxl_decode(): what the RAS daemon's
 * record callback calls for system "cxl". Same returns. */
int nt_cxl_decode_trace(const struct nt_ras_record *rec, uint64_t time_usec, struct nt_ras_event *ev,
                        const char **missing);
