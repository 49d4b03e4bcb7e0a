/* numatierd.conf loading: defaults, files, drop-ins, every error path,
 * the dumps, and that etc/ and doc/ describe every key of the table.
 * Each test writes its files into its own mkdtemp() directory. */
#include <errno.h>
#include <ftw.h>
#include <json-c/json.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <cmocka.h>

#include "numatier/config.h"
#include "numatier/hotplug.h"
#include "numatier/units.h"
#include "numatier/util.h"

struct dir {
    char path[PATH_MAX];
};

static int setup_dir(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    snprintf(d->path, sizeof(d->path), "%s/nt-config-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(d->path)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown_dir(void **state)
{
    struct dir *d = *state;
    int r = nftw(d->path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    return r;
}

/* dir/name with content; returns the path (malloc'd). */
static char *put(const struct dir *d, const char *name, const char *content)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", d->path, name) > 0);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* put() when the path is not needed. */
static void put_only(const struct dir *d, const char *name, const char *content)
{
    free(put(d, name, content));
}

static char *subdir(const struct dir *d, const char *name)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", d->path, name) > 0);
    assert_int_equal(mkdir(path, 0755), 0);
    return path;
}

/* Load that must fail with r and exactly want as the message; *out zeroed. */
static void expect_error(const char *main_path, const char *dropins, int r, const char *want)
{
    struct nt_config c, zero;
    memset(&c, 0xa5, sizeof(c));    /* garbage in: load must not read it */
    memset(&zero, 0, sizeof(zero));
    struct nt_config_error err = { "stale" };
    assert_int_equal(nt_config_load(&c, main_path, true, dropins, &err), r);
    assert_string_equal(err.message, want);
    assert_memory_equal(&c, &zero, sizeof(c));
    nt_config_done(&c);
}

static struct nt_config load_ok(const char *main_path, bool required, const char *dropins)
{
    struct nt_config c;
    struct nt_config_error err = { "" };
    int r = nt_config_load(&c, main_path, required, dropins, &err);
    if (r < 0)
        fail_msg("load failed: %d: %s", r, err.message);
    assert_string_equal(err.message, "");
    return c;
}

static void assert_origin(const struct nt_config *c, const char *section, const char *key,
                          const char *path, int line)
{
    char want[PATH_MAX + 32];
    if (path)
        snprintf(want, sizeof(want), "%s:%d", path, line);
    else
        snprintf(want, sizeof(want), "default");
    assert_string_equal(nt_config_origin(c, section, key), want);
}

static void assert_defaults(const struct nt_config *c)
{
    assert_true(c->cycle_interval_usec == 10 * 1000000ull);
    assert_int_equal(c->mode, NT_MODE_ENFORCE);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_string_equal(c->socket_path, NT_DEFAULT_SOCKET);
    assert_int_equal(c->max_clients, 64);
    assert_true(c->request_timeout_usec == 5 * 1000000ull);
    assert_true(c->max_request_bytes == 64 * 1024);
    assert_true(nt_nodeset_empty(&c->tiers.slow_nodes));
    assert_true(nt_nodeset_empty(&c->tiers.fast_nodes));
    assert_true(c->tiers.cpuless_is_slow);
    for (size_t i = 0; i < nt_config_nr_keys; i++)
        assert_string_equal(nt_config_origin(c, nt_config_keys[i].section, nt_config_keys[i].key),
                            "default");
}

/* ---- defaults and the table ----------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    struct nt_config c;
    nt_config_init(&c);
    assert_defaults(&c);
    nt_config_done(&c);
    nt_config_done(&c);     /* twice is fine */
    struct nt_config zero = { 0 };
    nt_config_done(&zero);

    c = load_ok(NULL, false, NULL);
    assert_defaults(&c);
    nt_config_done(&c);
    assert_string_equal(nt_mode_to_string(NT_MODE_ADVISE), "advise");
    assert_string_equal(nt_mode_to_string(NT_MODE_ENFORCE), "enforce");
}

static void test_table_is_sane(void **state)
{
    (void)state;
    assert_true(nt_config_nr_keys <= NT_CONFIG_MAX_KEYS);
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        const struct nt_config_key *k = &nt_config_keys[i];
        struct nt_config c;
        memset(&c, 0, sizeof(c));
        char why[256];
        /* default, min and max all parse, and the default is in range */
        if (nt_config_key_parse(k, k->def, &c, why, sizeof(why)) < 0)
            fail_msg("[%s] %s: default \"%s\": %s", k->section, k->key, k->def, why);
        if (k->min && nt_config_key_parse(k, k->min, &c, why, sizeof(why)) < 0)
            fail_msg("[%s] %s: min \"%s\": %s", k->section, k->key, k->min, why);
        if (k->max && nt_config_key_parse(k, k->max, &c, why, sizeof(why)) < 0)
            fail_msg("[%s] %s: max \"%s\": %s", k->section, k->key, k->max, why);
        nt_config_done(&c);
        /* the default is printed as written, so docs and dumps agree */
        nt_config_init(&c);
        char buf[NT_NODELIST_STRLEN];
        nt_config_key_format(k, &c, buf, sizeof(buf));
        assert_string_equal(buf, k->def);
        nt_config_done(&c);

        assert_true(k->help && strlen(k->help) > 10 && strchr(k->help, '\n') == NULL);
        assert_true(k->type != NT_CONFIG_ENUM || k->choices);
        assert_int_equal(strspn(k->key, "abcdefghijklmnopqrstuvwxyz_"), strlen(k->key));
        assert_string_not_equal(nt_config_type_name(k->type), "?");
        for (size_t j = 0; j < i; j++)
            if (strcmp(k->section, nt_config_keys[j].section) == 0 &&
                strcmp(k->key, nt_config_keys[j].key) == 0)
                fail_msg("[%s] %s twice in the table", k->section, k->key);
    }
    assert_null(nt_config_origin(NULL, "daemon", "nope"));
}

/* ---- loading files -------------------------------------------------------- */

static const char full_file[] =
    "# every key\n"                               /* 1 */
    "[daemon]\n"                                   /* 2 */
    "cycle_interval = 20s\n"                       /* 3 */
    "mode = enforce\n"                             /* 4 */
    "log_level = debug\n"                          /* 5 */
    "\n"                                           /* 6 */
    "[control]\n"                                  /* 7 */
    "socket = /tmp/x.sock\n"                       /* 8 */
    "max_clients = 4096\n"                         /* 9 */
    "request_timeout = 5min\n"                     /* 10 */
    "max_request_size = 1MiB\n"                    /* 11 */
    "[topology]\n"                                 /* 12 */
    "slow_tier_nodes = 2-3\n"                      /* 13 */
    "fast_tier_nodes = 0,1\n"                      /* 14 */
    "cpuless_is_slow = off\n";                     /* 15 */

static void test_main_only(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *path = put(d, "main.conf", full_file);
    struct nt_config c = load_ok(path, true, NULL);
    assert_true(c.cycle_interval_usec == 20 * 1000000ull);
    assert_int_equal(c.mode, NT_MODE_ENFORCE);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_string_equal(c.socket_path, "/tmp/x.sock");
    assert_int_equal(c.max_clients, 4096);
    assert_true(c.request_timeout_usec == 300 * 1000000ull);
    assert_true(c.max_request_bytes == 1 << 20);
    assert_true(nt_nodeset_test(&c.tiers.slow_nodes, 2) && nt_nodeset_test(&c.tiers.slow_nodes, 3));
    assert_true(nt_nodeset_test(&c.tiers.fast_nodes, 0) && nt_nodeset_test(&c.tiers.fast_nodes, 1));
    assert_false(nt_nodeset_test(&c.tiers.slow_nodes, 1));
    assert_false(c.tiers.cpuless_is_slow);
    assert_origin(&c, "daemon", "cycle_interval", path, 3);
    assert_origin(&c, "control", "socket", path, 8);
    assert_origin(&c, "topology", "cpuless_is_slow", path, 15);
    nt_config_done(&c);
}

static void test_dropins_in_lexical_order(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *main_path = put(d, "main.conf", "[daemon]\ncycle_interval = 20s\nlog_level = err\n");
    _cleanup_free_ char *dir = subdir(d, "conf.d");
    put_only(d, "conf.d/10-a.conf", "[daemon]\ncycle_interval = 40s\nmode = enforce\n");
    _cleanup_free_ char *b = put(d, "conf.d/50-b.conf", "[daemon]\n\ncycle_interval = 30s\n");
    _cleanup_free_ char *c9 = put(d, "conf.d/90-c.conf", "[daemon]\nmode = advise\n");
    /* strcmp order: upper case sorts before lower case in every locale */
    put_only(d, "conf.d/Z.conf", "[control]\nmax_clients = 1\n");
    _cleanup_free_ char *lo = put(d, "conf.d/a.conf", "[control]\nmax_clients = 2\n");
    /* not drop-ins: wrong suffix, hidden, bare ".conf" */
    put_only(d, "conf.d/README", "junk\n");
    put_only(d, "conf.d/60-x.conf.bak", "junk\n");
    put_only(d, "conf.d/.hidden.conf", "junk\n");
    put_only(d, "conf.d/.conf", "junk\n");
    put_only(d, "conf.d/60-x.CONF", "junk\n");

    struct nt_config c = load_ok(main_path, true, dir);
    assert_true(c.cycle_interval_usec == 30 * 1000000ull);
    assert_origin(&c, "daemon", "cycle_interval", b, 3);
    assert_int_equal(c.mode, NT_MODE_ADVISE);
    assert_origin(&c, "daemon", "mode", c9, 2);
    assert_int_equal(c.log_level, LOG_ERR);
    assert_origin(&c, "daemon", "log_level", main_path, 3);
    assert_int_equal(c.max_clients, 2);
    assert_origin(&c, "control", "max_clients", lo, 2);
    assert_origin(&c, "control", "socket", NULL, 0);
    nt_config_done(&c);
}

static void test_missing_files(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *missing = NULL, *want = NULL;
    assert_true(asprintf(&missing, "%s/nope.conf", d->path) > 0);

    /* required main file */
    assert_true(asprintf(&want, "%s: cannot open: %s", missing, strerror(ENOENT)) > 0);
    expect_error(missing, NULL, -ENOENT, want);

    /* optional main file and missing drop-in directory: defaults */
    struct nt_config c = load_ok(missing, false, missing);
    assert_defaults(&c);
    nt_config_done(&c);

    /* optional main file missing, drop-ins still apply */
    _cleanup_free_ char *dir = subdir(d, "conf.d");
    put_only(d, "conf.d/a.conf", "[daemon]\nmode = enforce\n");
    c = load_ok(missing, false, dir);
    assert_int_equal(c.mode, NT_MODE_ENFORCE);
    nt_config_done(&c);
}

static void test_unreadable_paths(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *file = put(d, "plain", "");
    _cleanup_free_ char *want = NULL;
    /* the drop-in "directory" is a file */
    assert_true(asprintf(&want, "%s: cannot read directory: %s", file, strerror(ENOTDIR)) > 0);
    expect_error(NULL, file, -ENOTDIR, want);

    /* a drop-in that is a directory */
    _cleanup_free_ char *dir = subdir(d, "conf.d");
    _cleanup_free_ char *sub = subdir(d, "conf.d/x.conf");
    free(want);
    assert_true(asprintf(&want, "%s: read error: %s", sub, strerror(EISDIR)) > 0);
    expect_error(NULL, dir, -EISDIR, want);

    /* the main "file" is a directory */
    free(want);
    assert_true(asprintf(&want, "%s: read error: %s", dir, strerror(EISDIR)) > 0);
    expect_error(dir, NULL, -EISDIR, want);
}

/* ---- errors inside files -------------------------------------------------- */

/* Write content as main.conf, load, and expect "path:<line>: <msg>". */
static void expect_file_error(const struct dir *d, const char *content, int r, int line, const char *msg)
{
    _cleanup_free_ char *path = put(d, "main.conf", content);
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s:%d: %s", path, line, msg) > 0);
    expect_error(path, NULL, r, want);
}

static void test_unknown_section_and_key(void **state)
{
    struct dir *d = *state;
    expect_file_error(d, "[daemon]\ncycle_interval = 1s\n\n[bogus]\nx = 1\n", -EINVAL, 4,
                      "unknown section [bogus]");
    /* even an empty one, and even at the end */
    expect_file_error(d, "[daemon]\n[Daemon]\n", -EINVAL, 2, "unknown section [Daemon]");
    expect_file_error(d, "[ daemon ]\n", -EINVAL, 1, "unknown section [ daemon ]");
    expect_file_error(d, "[daemon]\n# comment\nfoo = 1\n", -EINVAL, 3, "[daemon] unknown key \"foo\"");
    /* a key known in another section is unknown here */
    expect_file_error(d, "[daemon]\nsocket = /x\n", -EINVAL, 2, "[daemon] unknown key \"socket\"");
    expect_file_error(d, "[control]\nMax_Clients = 3\n", -EINVAL, 2,
                      "[control] unknown key \"Max_Clients\"");
    expect_file_error(d, "\nmode = enforce\n", -EINVAL, 2, "key \"mode\" comes before any [section]");
}

static void test_syntax_errors(void **state)
{
    struct dir *d = *state;
    expect_file_error(d, "[daemon]\nthis is not ini\n", -EINVAL, 2, "syntax error");
    expect_file_error(d, "[daemon\nmode = enforce\n", -EINVAL, 1,
                      "syntax error: a section header is [name]");
    expect_file_error(d, "[daemon] junk\n", -EINVAL, 1, "syntax error: a section header is [name]");
    expect_file_error(d, "[]\n", -EINVAL, 1, "unknown section []");
    /* the first error wins, whoever found it */
    expect_file_error(d, "[daemon]\njunk\nmode = fast\n", -EINVAL, 2, "syntax error");
    expect_file_error(d, "[daemon]\nmode = fast\njunk\n", -EINVAL, 2,
                      "[daemon] mode: must be one of: enforce, advise (got \"fast\")");

    /* The longest line inih takes is 199 characters, as the man page says. */
    char line199[256];
    memset(line199, 'x', sizeof(line199));
    memcpy(line199, "[daemon]\n#", 10);
    strcpy(line199 + 9 + 199, "\n");
    _cleanup_free_ char *p199 = put(d, "199.conf", line199);
    struct nt_config ok = load_ok(p199, true, NULL);
    nt_config_done(&ok);
    line199[9 + 199] = 'x';
    strcpy(line199 + 9 + 200, "\n");
    expect_file_error(d, line199, -EINVAL, 2, "line too long (at most 199 characters) or not text");

    char longline[400];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "[daemon]\n#", 10);
    strcpy(longline + sizeof(longline) - 2, "\n");
    _cleanup_free_ char *path = put(d, "main.conf", longline);
    struct nt_config c;
    struct nt_config_error err;
    assert_int_equal(nt_config_load(&c, path, true, NULL, &err), -EINVAL);
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s:2: line too long", path) > 0);
    assert_memory_equal(err.message, want, strlen(want));
}

struct bad_value {
    const char *section, *line;
    int r;
    const char *msg;    /* after "path:2: " */
};

static void test_bad_values(void **state)
{
    struct dir *d = *state;
    static const struct bad_value cases[] = {
        { "daemon", "cycle_interval = 10", -EINVAL,
          "[daemon] cycle_interval: missing unit, e.g. 30s (got \"10\")" },
        { "daemon", "cycle_interval = 50ms", -ERANGE,
          "[daemon] cycle_interval: must be between 100ms and 1h (got \"50ms\")" },
        { "daemon", "cycle_interval = 3601s", -ERANGE,
          "[daemon] cycle_interval: must be between 100ms and 1h (got \"3601s\")" },
        { "daemon", "cycle_interval = 10 parsecs", -EINVAL,
          "[daemon] cycle_interval: unknown unit, use us, ms, s, min, h or d (got \"10 parsecs\")" },
        { "daemon", "cycle_interval =", -EINVAL, "[daemon] cycle_interval: empty value (got \"\")" },
        { "daemon", "mode = Enforce", -EINVAL,
          "[daemon] mode: must be one of: enforce, advise (got \"Enforce\")" },
        { "daemon", "mode =", -EINVAL, "[daemon] mode: empty value (got \"\")" },
        { "daemon", "log_level = verbose", -EINVAL,
          "[daemon] log_level: must be one of: debug, info, notice, warning, err (got \"verbose\")" },
        { "control", "socket = run/x.sock", -EINVAL,
          "[control] socket: must be an absolute path (got \"run/x.sock\")" },
        { "control", "socket =", -EINVAL, "[control] socket: empty value (got \"\")" },
        { "control", "socket = /0123456789/0123456789/0123456789/0123456789/0123456789"
                     "/0123456789/0123456789/0123456789/0123456789/012.sock", -ERANGE,
          "[control] socket: too long for a socket path (at most 107 characters) (got "
          "\"/0123456789/0123456789/0123456789/0123456789/0123456789"
          "/0123456789/0123456789/0123456789/0123456789/012.sock\")" },
        { "control", "max_clients = 0", -ERANGE,
          "[control] max_clients: must be between 1 and 4096 (got \"0\")" },
        { "control", "max_clients = 4097", -ERANGE,
          "[control] max_clients: must be between 1 and 4096 (got \"4097\")" },
        { "control", "max_clients = 4294967296", -ERANGE,
          "[control] max_clients: number too large (got \"4294967296\")" },
        { "control", "max_clients = -1", -EINVAL,
          "[control] max_clients: must not be negative (got \"-1\")" },
        { "control", "max_clients = 12abc", -EINVAL,
          "[control] max_clients: not a whole number (got \"12abc\")" },
        { "control", "max_clients = 1.5", -EINVAL,
          "[control] max_clients: not a whole number (got \"1.5\")" },
        { "control", "request_timeout = 5m30s", -EINVAL,
          "[control] request_timeout: unknown unit, use us, ms, s, min, h or d (got \"5m30s\")" },
        { "control", "request_timeout = 301s", -ERANGE,
          "[control] request_timeout: must be between 100ms and 5min (got \"301s\")" },
        { "control", "max_request_size = 10Q", -EINVAL,
          "[control] max_request_size: unknown unit, use K, M, G or T (optionally with B or iB) "
          "(got \"10Q\")" },
        { "control", "max_request_size = 1023", -ERANGE,
          "[control] max_request_size: must be between 1K and 16M (got \"1023\")" },
        { "control", "max_request_size = 16777217", -ERANGE,
          "[control] max_request_size: must be between 1K and 16M (got \"16777217\")" },
        { "control", "max_request_size = 99999999999T", -ERANGE,
          "[control] max_request_size: number too large (got \"99999999999T\")" },
        { "topology", "cpuless_is_slow = maybe", -EINVAL,
          "[topology] cpuless_is_slow: not a boolean, use yes/no, true/false, on/off or 1/0 "
          "(got \"maybe\")" },
        { "topology", "cpuless_is_slow =", -EINVAL, "[topology] cpuless_is_slow: empty value (got \"\")" },
        { "topology", "slow_tier_nodes = 1-", -EINVAL,
          "[topology] slow_tier_nodes: not a number (got \"1-\")" },
        { "topology", "slow_tier_nodes = 3-1", -EINVAL,
          "[topology] slow_tier_nodes: range ends before it starts (got \"3-1\")" },
        { "topology", "fast_tier_nodes = 2000", -ERANGE,
          "[topology] fast_tier_nodes: node number too large (nodes are 0 to 1023) (got \"2000\")" },
        { "topology", "fast_tier_nodes = 1,,2", -EINVAL,
          "[topology] fast_tier_nodes: empty element in node list (got \"1,,2\")" },
    };
    for (size_t i = 0; i < NT_ARRAY_SIZE(cases); i++) {
        char content[512];
        snprintf(content, sizeof(content), "[%s]\n%s\n", cases[i].section, cases[i].line);
        expect_file_error(d, content, cases[i].r, 2, cases[i].msg);
    }
}

static void test_boundaries_accepted(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *path = put(d, "main.conf",
        "[daemon]\ncycle_interval = 100ms\n"
        "[control]\nmax_clients = 1\nrequest_timeout = 5min\nmax_request_size = 16M\n"
        "socket = /0123456789/0123456789/0123456789/0123456789/0123456789"
        "/0123456789/0123456789/0123456789/0123456789/01.sock\n"
        "[daemon]\nlog_level = error\n");
    struct nt_config c = load_ok(path, true, NULL);
    assert_true(c.cycle_interval_usec == 100000);
    assert_int_equal(c.max_clients, 1);
    assert_true(c.max_request_bytes == 16 << 20);
    assert_int_equal(strlen(c.socket_path), 107);
    assert_int_equal(c.log_level, LOG_ERR);     /* alias */
    char buf[64];
    for (size_t i = 0; i < nt_config_nr_keys; i++)
        if (strcmp(nt_config_keys[i].key, "log_level") == 0)
            nt_config_key_format(&nt_config_keys[i], &c, buf, sizeof(buf));
    assert_string_equal(buf, "err");
    nt_config_done(&c);
}

static void test_syntax_tolerance(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *path = put(d, "main.conf",
        "\xEF\xBB\xBF[daemon]\r\n"                              /* 1: BOM, CRLF */
        "  cycle_interval = 20s   # why not\n"                  /* 2 */
        "\tmode = enforce ; inline\n"                          /* 3 */
        "; full-line comment\n"                                /* 4 */
        "   # indented comment\n"                              /* 5 */
        "log_level:notice\n"                                   /* 6: inih's ':' */
        "mode = observe\n"                                     /* 7: later wins; the old name of advise */
        "[control]   \n"                                       /* 8 */
        "socket = /run/a#b;c\n"                                /* 9: no blank before # */
        "[topology]\n"                                         /* 10 */
        "slow_tier_nodes =\n"                                  /* 11: empty is fine */
        "fast_tier_nodes = 0 - 1 , 4\n");                      /* 12 */
    struct nt_config c = load_ok(path, true, NULL);
    assert_true(c.cycle_interval_usec == 20000000);
    assert_int_equal(c.mode, NT_MODE_ADVISE);
    assert_origin(&c, "daemon", "mode", path, 7);
    assert_int_equal(c.log_level, LOG_NOTICE);
    assert_string_equal(c.socket_path, "/run/a#b;c");
    assert_true(nt_nodeset_empty(&c.tiers.slow_nodes));
    assert_origin(&c, "topology", "slow_tier_nodes", path, 11);
    assert_true(nt_nodeset_test(&c.tiers.fast_nodes, 4));
    nt_config_done(&c);
}

static void test_tier_overlap(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *main_path = put(d, "main.conf", "[topology]\nslow_tier_nodes = 2-3\n");
    _cleanup_free_ char *dir = subdir(d, "conf.d");
    _cleanup_free_ char *p = put(d, "conf.d/a.conf", "[topology]\n\nfast_tier_nodes = 0,3\n");
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s:3: [topology] fast_tier_nodes: node 3 is also in slow_tier_nodes "
                         "(set at %s:2); a node belongs to one tier only", p, main_path) > 0);
    expect_error(main_path, dir, -EINVAL, want);

    /* a later drop-in may repair it: checks run after every file */
    put_only(d, "conf.d/b.conf", "[topology]\nslow_tier_nodes = 2\n");
    struct nt_config c = load_ok(main_path, true, dir);
    assert_true(nt_nodeset_test(&c.tiers.fast_nodes, 3));
    assert_false(nt_nodeset_test(&c.tiers.slow_nodes, 3));
    nt_config_done(&c);
}

static void test_tiering_thresholds(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *p = put(d, "main.conf", "[tiering]\nhot_heat = 10\ncold_heat = 10\n");
    _cleanup_free_ char *want = NULL;
    assert_true(asprintf(&want, "%s:3: [tiering] cold_heat: 10 is not below hot_heat 10 (set at %s:2)", p, p) > 0);
    expect_error(p, NULL, -EINVAL, want);

    _cleanup_free_ char *q = put(d, "wm.conf", "[tiering]\nlow_watermark = 30%\n");
    _cleanup_free_ char *want2 = NULL;
    assert_true(asprintf(&want2, "%s:2: [tiering] low_watermark: 30%% is above high_watermark 20%% (set at default)",
                         q) > 0);
    expect_error(q, NULL, -EINVAL, want2);
}

/* A failing load after allocations (socket path, origins) frees them; a
 * later load into the same variable works. ASan checks the leak part. */
static void test_failure_frees_everything(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *main_path = put(d, "main.conf", full_file);
    _cleanup_free_ char *dir = subdir(d, "conf.d");
    put_only(d, "conf.d/z.conf", "[control]\nsocket = /other\nmax_clients = 0\n");
    struct nt_config c;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nt_config_load(&c, main_path, true, dir, NULL), -ERANGE);
        struct nt_config zero = { 0 };
        assert_memory_equal(&c, &zero, sizeof(c));
    }
    c = load_ok(main_path, true, NULL);
    assert_string_equal(c.socket_path, "/tmp/x.sock");
    nt_config_done(&c);
}

/* ---- output --------------------------------------------------------------- */

static char *dump_to_string(const struct nt_config *c)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    nt_config_dump(c, f);
    long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    char *buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    return buf;
}

static void test_dump(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *path = put(d, "main.conf",
        "[daemon]\ncycle_interval = 1500ms\n[topology]\nslow_tier_nodes = 3,2,8\n");
    struct nt_config c = load_ok(path, true, NULL);
    _cleanup_free_ char *out = dump_to_string(&c);

    _cleanup_free_ char *want_slow = NULL;
    char *line = strstr(out, "cycle_interval = 1500ms ");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    _cleanup_free_ char *origin = NULL;
    assert_true(asprintf(&origin, "    # %s:2\n", path) > 0);
    assert_memory_equal(eol + 1 - strlen(origin), origin, strlen(origin));
    assert_true(asprintf(&want_slow, "# %s:4\n", path) > 0);
    assert_non_null(strstr(strstr(out, "slow_tier_nodes = 2-3,8 "), want_slow));
    assert_non_null(strstr(out, "mode = enforce "));
    assert_non_null(strstr(strstr(out, "mode = enforce "), "# default\n"));
    assert_non_null(strstr(out, "fast_tier_nodes = "));
    /* sections in table order, each once */
    char *sd = strstr(out, "[daemon]\n"), *sc = strstr(out, "\n[control]\n"), *st = strstr(out, "\n[topology]\n");
    assert_true(sd == out && sc > sd && st > sc);
    assert_null(strstr(st + 2, "[topology]"));
    /* origins line up in one column */
    size_t col = 0;
    for (char *p = out; (p = strstr(p, "    # ")); p++) {
        char *bol = p;
        while (bol > out && bol[-1] != '\n')
            bol--;
        if (col == 0)
            col = (size_t)(p - bol);
        assert_int_equal((size_t)(p - bol), col);
    }

    /* the dump is itself a valid config that yields the same values */
    _cleanup_free_ char *again = put(d, "again.conf", out);
    struct nt_config c2 = load_ok(again, true, NULL);
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        char a[NT_NODELIST_STRLEN], b[NT_NODELIST_STRLEN];
        nt_config_key_format(&nt_config_keys[i], &c, a, sizeof(a));
        nt_config_key_format(&nt_config_keys[i], &c2, b, sizeof(b));
        assert_string_equal(a, b);
    }
    nt_config_done(&c2);
    nt_config_done(&c);
}

static const char *json_str(struct json_object *root, const char *section, const char *key,
                            const char *field)
{
    struct json_object *s, *k, *v;
    assert_true(json_object_object_get_ex(root, section, &s));
    assert_true(json_object_object_get_ex(s, key, &k));
    assert_true(json_object_object_get_ex(k, field, &v));
    return json_object_get_string(v);
}

static void test_to_json(void **state)
{
    struct dir *d = *state;
    _cleanup_free_ char *path = put(d, "main.conf", full_file);
    struct nt_config c = load_ok(path, true, NULL);
    struct json_object *j = nt_config_to_json(&c);
    assert_non_null(j);
    _cleanup_free_ char *origin = NULL;
    assert_true(asprintf(&origin, "%s:3", path) > 0);
    assert_string_equal(json_str(j, "daemon", "cycle_interval", "value"), "20s");
    assert_string_equal(json_str(j, "daemon", "cycle_interval", "origin"), origin);
    assert_string_equal(json_str(j, "daemon", "mode", "value"), "enforce");
    assert_string_equal(json_str(j, "control", "socket", "value"), "/tmp/x.sock");
    assert_string_equal(json_str(j, "control", "max_request_size", "value"), "1M");
    assert_string_equal(json_str(j, "topology", "slow_tier_nodes", "value"), "2-3");
    assert_string_equal(json_str(j, "topology", "cpuless_is_slow", "value"), "no");
    json_object_put(j);
    nt_config_done(&c);

    nt_config_init(&c);
    j = nt_config_to_json(&c);
    assert_string_equal(json_str(j, "control", "max_clients", "value"), "64");
    assert_string_equal(json_str(j, "control", "max_clients", "origin"), "default");
    assert_string_equal(json_str(j, "topology", "fast_tier_nodes", "value"), "");
    /* every key, in its section */
    size_t n = 0;
    json_object_object_foreach(j, sname, sobj) {
        (void)sname;
        n += (size_t)json_object_object_length(sobj);
    }
    assert_int_equal(n, nt_config_nr_keys);
    json_object_put(j);
    nt_config_done(&c);
}

/* ---- the generic row machinery, on a type no key uses yet ----------------- */

struct pct_holder {
    double pct;
};

static void test_percent_rows(void **state)
{
    (void)state;
    const struct nt_config_key k = {
        .section = "x", .key = "share", .type = NT_CONFIG_PERCENT,
        .offset = offsetof(struct pct_holder, pct), .min = "0.5", .max = "50%", .def = "5%",
        .help = "test",
    };
    struct pct_holder h = { -1 };
    char why[128], buf[64];
    assert_int_equal(nt_config_key_parse(&k, "12.5%", &h, why, sizeof(why)), 0);
    assert_true(h.pct == 12.5);
    nt_config_key_format(&k, &h, buf, sizeof(buf));
    assert_string_equal(buf, "12.5%");
    assert_int_equal(nt_config_key_parse(&k, "60", &h, why, sizeof(why)), -ERANGE);
    assert_string_equal(why, "must be between 0.5 and 50%");
    assert_int_equal(nt_config_key_parse(&k, "0.4", &h, why, sizeof(why)), -ERANGE);
    assert_int_equal(nt_config_key_parse(&k, "x", &h, why, sizeof(why)), -EINVAL);
    assert_true(h.pct == 12.5);
    h.pct = 100.0 / 3;
    nt_config_key_format(&k, &h, buf, sizeof(buf));
    double back;
    assert_int_equal(nt_parse_percent(buf, &back), 0);
    assert_true(back == h.pct);
    h.pct = 0;
    nt_config_key_format(&k, &h, buf, sizeof(buf));
    assert_string_equal(buf, "0%");
}

/* ---- etc/numatierd.conf and doc/numatierd.conf.5 -------------------------- */

/* The repository file rel, found next to this source file. */
static char *repo_file(const char *rel)
{
    char *path;
    const char *marker = "tests/unit/test-config.c";
    size_t n = strlen(__FILE__) - strlen(marker);
    assert_true(asprintf(&path, "%.*s%s", (int)n, __FILE__, rel) > 0);
    return path;
}

/* Skip when run away from the checkout; fail when the checkout lacks rel. */
static char *slurp_or_skip(const char *rel)
{
    _cleanup_free_ char *self = repo_file("tests/unit/test-config.c");
    if (access(self, R_OK) < 0) {
        print_message("%s not found; run from the repository root\n", self);
        skip();
    }
    _cleanup_free_ char *path = repo_file(rel);
    char *text = NULL;
    int r = nt_read_file("/", path, &text);
    if (r < 0)
        fail_msg("cannot read %s: %s", path, strerror(-r));
    return text;
}

static void test_sample_config_documents_every_key(void **state)
{
    (void)state;
    _cleanup_free_ char *raw = slurp_or_skip("etc/numatierd.conf"), *text = NULL;
    assert_true(asprintf(&text, "%s\n", raw) > 0);    /* nt_read_file() drops the last newline */
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        const struct nt_config_key *k = &nt_config_keys[i];
        char section[64], line[256];
        snprintf(section, sizeof(section), "\n[%s]\n", k->section);
        snprintf(line, sizeof(line), "\n#%s =%s%s\n", k->key, *k->def ? " " : "", k->def);
        /* the line after its section's header: sections may share key names */
        char *s = strstr(text, section), *l = s ? strstr(s, line) : NULL;
        if (!s || !l)
            fail_msg("etc/numatierd.conf lacks \"%s\" below [%s]", line + 1, k->section);
        /* inside that section: no other header between the two */
        for (char *p = s + 1; (p = strstr(p, "\n[")) && p < l; p++)
            fail_msg("#%s is not in [%s] in etc/numatierd.conf", k->key, k->section);
        /* with a comment line just above */
        char *prev = l - 1;
        while (prev > text && prev[-1] != '\n')
            prev--;
        if (*prev != '#' || prev[1] != ' ')
            fail_msg("#%s in etc/numatierd.conf has no comment above it", k->key);
    }
    /* and it loads as-is, giving the defaults */
    _cleanup_free_ char *path = repo_file("etc/numatierd.conf");
    struct nt_config c = load_ok(path, true, NULL);
    assert_defaults(&c);
    nt_config_done(&c);
}

static void test_man_page_documents_every_key(void **state)
{
    (void)state;
    _cleanup_free_ char *text = slurp_or_skip("doc/numatierd.conf.5");
    for (size_t i = 0; i < nt_config_nr_keys; i++) {
        const struct nt_config_key *k = &nt_config_keys[i];
        char want[128];
        /* roff escapes '-' in values, so look for the key's .TP entry */
        snprintf(want, sizeof(want), "\n.B %s\n", k->key);
        if (!strstr(text, want))
            fail_msg("doc/numatierd.conf.5 lacks an entry \".B %s\"", k->key);
        snprintf(want, sizeof(want), "\n.SS [%s]\n", k->section);
        if (!strstr(text, want))
            fail_msg("doc/numatierd.conf.5 lacks a section \".SS [%s]\"", k->section);
    }
}

/* [offline]: the defaults the brief promises, both restart actions, and a
 * value that is neither refused with the choices named. */
static void test_offline_keys(void **state)
{
    struct dir *d = *state;
    struct nt_config c;
    nt_config_init(&c);
    assert_true(c.offline_write_timeout_usec == 120 * 1000000ull);
    assert_true(c.offline_timeout_usec == 30 * 60 * 1000000ull);
    assert_int_equal(c.offline_ebusy_retries, 3);
    assert_true(c.offline_retry_backoff_usec == 2 * 1000000ull);
    assert_false(c.offline_retry_timeouts);
    assert_int_equal(c.offline_on_restart, NT_OFFLINE_RESTART_ROLLBACK);
    assert_true(c.offline_allow_slow);
    assert_int_equal(c.offline_history, 20);
    nt_config_done(&c);

    _cleanup_free_ char *p = put(d, "main.conf", "[offline]\non_restart = resume\nwrite_timeout = 5s\n"
                                                 "history = 3\nallow_slow = no\n");
    c = load_ok(p, true, NULL);
    assert_int_equal(c.offline_on_restart, NT_OFFLINE_RESTART_RESUME);
    assert_true(c.offline_write_timeout_usec == 5 * 1000000ull);
    assert_int_equal(c.offline_history, 3);
    assert_false(c.offline_allow_slow);
    assert_origin(&c, "offline", "on_restart", p, 2);
    struct nt_hotplug_params hp;
    nt_hotplug_params_from_config(&hp, &c);
    assert_int_equal(hp.on_restart, NT_OFFLINE_RESTART_RESUME);
    assert_int_equal(hp.history, 3);
    assert_true(hp.migration_budget == c.migration_budget);
    nt_config_done(&c);

    _cleanup_free_ char *q = put(d, "bad.conf", "[offline]\non_restart = maybe\n");
    struct nt_config_error err = { "" };
    assert_int_equal(nt_config_load(&c, q, true, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.message, "on_restart"));
    assert_non_null(strstr(err.message, "rollback"));
    _cleanup_free_ char *z = put(d, "zero.conf", "[offline]\nwrite_timeout = 0s\n");
    assert_int_equal(nt_config_load(&c, z, true, NULL, &err), -ERANGE);
}

/* [placement] move_cold: the rest of a page move follows its hot pages. */
static void test_move_cold(void **state)
{
    struct dir *d = *state;
    struct nt_config c;
    nt_config_init(&c);
    assert_true(c.move_cold);
    nt_config_done(&c);
    _cleanup_free_ char *p = put(d, "main.conf", "[placement]\nmove_cold = no\n");
    c = load_ok(p, true, NULL);
    assert_false(c.move_cold);
    assert_origin(&c, "placement", "move_cold", p, 2);
    nt_config_done(&c);
    _cleanup_free_ char *q = put(d, "bad.conf", "[placement]\nmove_cold = some\n");
    struct nt_config_error err = { "" };
    assert_int_equal(nt_config_load(&c, q, true, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.message, "move_cold"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_table_is_sane),
        cmocka_unit_test_setup_teardown(test_main_only, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_dropins_in_lexical_order, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_missing_files, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_unreadable_paths, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_unknown_section_and_key, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_syntax_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_bad_values, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_boundaries_accepted, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_syntax_tolerance, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_tier_overlap, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_tiering_thresholds, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_failure_frees_everything, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_dump, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_to_json, setup_dir, teardown_dir),
        cmocka_unit_test(test_percent_rows),
        cmocka_unit_test(test_sample_config_documents_every_key),
        cmocka_unit_test(test_man_page_documents_every_key),
        cmocka_unit_test_setup_teardown(test_offline_keys, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_move_cold, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
