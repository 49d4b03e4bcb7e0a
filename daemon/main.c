/* numatierd: arguments, configuration, then the manager's loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "numatier/config.h"
#include "numatier/log.h"
#include "numatier/manager.h"
#include "numatier/util.h"

struct args {
    const char *config_path;
    bool config_given;
    const char *dropin_dir;
    const char *root;
    bool check_config;
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: numatierd [OPTIONS]\n"
            "NUMA page-placement and memory tiering daemon.\n\n"
            "  -c, --config FILE      main configuration file (default %s)\n"
            "      --config-dir DIR   drop-in directory (default %s)\n"
            "      --root DIR         read sysfs and procfs below DIR (testing)\n"
            "      --check-config     validate, print the effective configuration, exit\n"
            "  -h, --help             show this help\n"
            "      --version          show the version\n",
            NT_CONFIG_MAIN_PATH, NT_CONFIG_DROPIN_DIR);
}

/* Returns -1 to continue, or an exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
    enum { OPT_CONFIG_DIR = 256, OPT_ROOT, OPT_CHECK, OPT_VERSION };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "config-dir", required_argument, NULL, OPT_CONFIG_DIR },
        { "root", required_argument, NULL, OPT_ROOT },
        { "check-config", no_argument, NULL, OPT_CHECK },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': a->config_path = optarg; a->config_given = true; break;
        case OPT_CONFIG_DIR: a->dropin_dir = optarg; break;
        case OPT_ROOT: a->root = optarg; break;
        case OPT_CHECK: a->check_config = true; break;
        case 'h': usage(stdout); return 0;
        case OPT_VERSION: printf("numatierd %s\n", NT_VERSION); return 0;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "numatierd: unexpected argument '%s'\n", argv[optind]);
        return EX_USAGE;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct args a = {
        .config_path = NT_CONFIG_MAIN_PATH,
        .dropin_dir = NT_CONFIG_DROPIN_DIR,
        .root = "/",
    };
    int status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;

    struct nt_config config;
    struct nt_config_error err = { { 0 } };
    int r = nt_config_load(&config, a.config_path, a.config_given, a.dropin_dir, &err);
    if (r < 0) {
        /* --check-config is run by people: no journal priority prefix. */
        if (a.check_config)
            fprintf(stderr, "numatierd: %s\n", err.message);
        else
            log_error("%s", err.message);
        return EX_CONFIG;
    }
    if (a.check_config) {
        nt_config_dump(&config, stdout);
        nt_config_done(&config);
        return 0;
    }
    nt_log_set_max_level(config.log_level);
    signal(SIGPIPE, SIG_IGN);

    struct nt_manager_options opts = {
        .config_path = a.config_path,
        .config_required = a.config_given,
        .dropin_dir = a.dropin_dir,
        .root = a.root,
    };
    _cleanup_(nt_manager_freep) struct nt_manager *m = NULL;
    r = nt_manager_new(&opts, &config, &m);
    nt_config_done(&config);
    if (r < 0) {
        log_error("startup failed: %s", strerror(-r));
        return EXIT_FAILURE;
    }
    r = nt_manager_run(m);
    if (r < 0) {
        log_error("event loop failed: %s", strerror(-r));
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
