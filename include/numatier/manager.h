/* The manager owns the event loop and wires every event source: signals,
 * the cycle timer, the watchdog and the control socket. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "numatier/config.h"

struct nt_manager;

struct nt_manager_options {
    const char *config_path;    /* main config file */
    bool config_required;       /* --config was given: it must exist */
    const char *dropin_dir;     /* drop-in directory, NULL for none */
    const char *root;           /* sysfs/procfs root, "/" normally */
};

/* Takes ownership of *config (moved out, left zeroed). */
int nt_manager_new(const struct nt_manager_options *opts, struct nt_config *config,
                   struct nt_manager **out);
/* Run until SIGTERM/SIGINT; returns 0 on a clean exit. */
int nt_manager_run(struct nt_manager *m);
void nt_manager_free(struct nt_manager *m);
static inline void nt_manager_freep(struct nt_manager **m) { nt_manager_free(*m); }
