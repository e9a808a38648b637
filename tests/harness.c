/*
 * harness.c - the same checks, run against every stage of the course.
 *
 * Every check starts the real programs (servers with -p 0, so parallel runs
 * never collide), waits for the "listening on ADDR:PORT" line - never a
 * sleep - talks to them over 127.0.0.1, then stops them with SIGTERM and
 * asserts a clean exit 0. The stage table in stages.h says what each stage
 * claims; a check a stage does not claim either does not apply ("-") or,
 * where the course documents the limitation, asserts it ("limit").
 *
 * Suites: one per stage; "tools", which checks the harness's own tools;
 * "short", which runs the I/O checks again with every program under
 * shortio.so (short reads and writes, EINTR); "valgrind", the same under
 * memcheck; "asan", with -A DIR, the same against DIR, a copy of the
 * chapters built with AddressSanitizer and UBSan (tests/asan.sh): any
 * report, a leak at exit included, fails the test case, and shows. The
 * report card at the end has a row per stage and a column per check,
 * plus one per extra pass.
 *
 * To add a chapter: a row in stages.h. To add a check: a function in the
 * checks_*.c file of its family, declared in harness.h, and a row in
 * the table below.
 *
 * usage: harness [-r ROOT] [-s STAGE] [-c CHECK] [-V] [-P] [-A DIR] [-p PASS] [-m FILE]
 *
 * -m FILE writes the reliability table: the report card's rows, the
 * columns of the hostile checks and the bug-hunting passes, in Markdown
 * for the top README (tests/reliability.sh puts it there).
 */
#include "harness.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct config cfg = {.root = ".."};

#define IN_SHORT_IO (1u << SHORT_IO)
#define IN_VALGRIND (1u << VALGRIND)
#define IN_ASAN (1u << ASAN)

/* One row per check: one column of the report card. */
struct check {
    const char *name;           /* its column */
    unsigned needs;             /* the stage must have all of these... */
    unsigned claims;            /* ...and this, or else the limitation runs */
    check_fn *test;
    check_fn *limitation;       /* NULL: without the claim, it does not apply */
    unsigned passes;            /* also run in these passes */
    int forges;                 /* needs raw sockets (root) */
};

static const struct check checks[] = {
    {"args", 0, 0, check_bad_args, NULL, IN_ASAN, 0},
    {"inuse", 0, 0, check_port_in_use, NULL, 0, 0},
    {"signal", 0, 0, check_signals, NULL, IN_VALGRIND | IN_ASAN, 0},
    {"restart", 0, 0, check_restart, NULL, 0, 0},
    {"ipv6", 0, 0, check_ipv6, NULL, 0, 0},
    {"nofd", 0, 0, check_fd_limit, NULL, 0, 0},
    {"stdfd", 0, 0, check_std_fds, NULL, 0, 0},
    {"logfull", 0, 0, check_full_log, NULL, 0, 0},
    {"faults", 0, 0, check_faults, NULL, 0, 0},
    {"greet", 0, P_GREETING, check_greeting, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"resolve", 0, P_RESOLVE, check_resolve, NULL, IN_VALGRIND | IN_ASAN, 0},
    {"http", 0, P_HTTP_GET, check_http_get, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"echo", 0, P_TCP_ECHO, check_tcp_echo, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"halfcl", 0, P_TCP_ECHO, check_half_close, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"reset", 0, P_TCP_ECHO, check_reset, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"frames", 0, P_TCP_ECHO, check_framing, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"idle", 0, P_IDLE_TIMEOUT, check_idle_timeout, NULL, 0, 0},
    {"udp", 0, P_UDP_ECHO, check_udp_echo, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"udpself", 0, P_UDP_ECHO, check_udp_self, NULL, 0, 1},
    {"client", 0, 0, check_clients, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"waits", 0, 0, check_client_timeouts, NULL, IN_SHORT_IO, 0},
    {"stdout", 0, 0, check_client_output, NULL, IN_VALGRIND | IN_ASAN, 0},
    {"concur", P_TCP_ECHO, P_CONCURRENT, check_concurrent, limit_concurrent, 0, 0},
    {"load", 0, P_TCP_ECHO, check_load, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"many", 0, P_CONCURRENT, check_many, NULL, IN_VALGRIND | IN_ASAN, 0},
    {"busy", 0, P_MAX_CONNS | P_POOL, check_busy, NULL, 0, 0},
    {"pool", 0, P_POOL, check_pool, NULL, 0, 0},
    {"counts", 0, P_COUNTERS, check_counters, NULL, IN_VALGRIND | IN_ASAN, 0},
    {"usr1", 0, P_COUNTERS, check_signal_flood, NULL, 0, 0},
    {"fork", 0, P_FORK, check_processes, NULL, IN_ASAN, 0},
    {"c1k", 0, P_CONCURRENT, check_thousand, NULL, IN_ASAN, 0},
    {"backpr", 0, P_BACKPRESSURE, check_backpressure, NULL, 0, 0},
    {"flood", P_BACKPRESSURE, 0, check_flood, NULL, 0, 0},
    {"idles", P_IDLE_TIMEOUT | P_CONCURRENT, 0, check_idles, NULL, 0, 0},
    {"c10k", P_BACKPRESSURE, P_C10K, check_c10k, limit_c10k, 0, 0},
    {"httpd", 0, P_HTTPD, check_httpd, NULL, IN_SHORT_IO | IN_VALGRIND | IN_ASAN, 0},
    {"redial", 0, P_REDIAL, check_redial, NULL, 0, 0},
    {"resets", P_TCP_ECHO, 0, check_resets, NULL, IN_ASAN, 0},
    {"idlers", P_TCP_ECHO, P_IDLERS, check_idlers, limit_idlers, IN_ASAN, 0},
    {"burst", P_UDP_ECHO, 0, check_burst, NULL, IN_ASAN, 0},
    {"termall", P_TCP_ECHO, 0, check_termall, NULL, IN_VALGRIND | IN_ASAN, 0},
    {"badsrv", P_TCP_ECHO, 0, check_badsrv, NULL, IN_ASAN, 0},
};
#define NCHECKS ((int)(sizeof checks / sizeof checks[0]))

/* The harness's own tools, checked once, before any stage relies on them. */
static const struct tool {
    const char *name;
    check_fn *test;
} tools[] = {
    {"loadgen", check_loadgen_catches},
    {"lgmodes", check_loadgen_modes},
    {"concur", check_concurrent_is_proven},
    {"rusage", check_rusage},
};
#define NTOOLS ((int)(sizeof tools / sizeof tools[0]))

enum verdict { NOT_RUN, NOT_APPLICABLE, PASSED, FAILED, LIMIT_OK, LIMIT_FAILED };

/* The report card: a column per check, then one per extra pass, which
 * passes only if every check run in that pass passed. Test case names are
 * kept to file each result where it belongs. */
struct card {
    enum verdict v[NSTAGES][NCHECKS + NPASSES - 1];
    char names[NPASSES][NSTAGES][NCHECKS][48];
    int passed, failed;
};

/* Which function a check means for a stage: its test, its limitation, or
 * NULL (does not apply). */
static check_fn *test_for(const struct check *c, const struct stage *st, int *is_limit)
{
    *is_limit = 0;
    if ((st->props & c->needs) != c->needs)
        return NULL;
    if (c->claims == 0 || (st->props & c->claims))
        return c->test;
    *is_limit = c->limitation != NULL;
    return c->limitation;
}

/* Every test case is this one function; its loop index says which check
 * of which stage it is. */
START_TEST(run_check)
{
    int is_limit;
    const struct stage *st = &stages[_i / NCHECKS];
    test_for(&checks[_i % NCHECKS], st, &is_limit)(st);
}
END_TEST

/* The same in the ASAN pass: a program that exits with a report fails the
 * check at once (finish()); one that leaves a report and no exit status
 * to see, a process a server forked, fails it here. In the test's own
 * process, so that the failure is this test's. */
START_TEST(run_sanitized)
{
    int is_limit;
    const struct stage *st = &stages[_i / NCHECKS];
    reports_open(_i);
    test_for(&checks[_i % NCHECKS], st, &is_limit)(st);
    reports_assert_none();
}
END_TEST

START_TEST(run_tool)
{
    tools[_i].test(NULL);
}
END_TEST

static void file_result(struct card *card, const char *name, int ok, const char *msg)
{
    for (int pass = 0; pass < NPASSES; pass++) {
        for (int si = 0; si < NSTAGES; si++) {
            for (int ci = 0; ci < NCHECKS; ci++) {
                if (strcmp(name, card->names[pass][si][ci]) != 0)
                    continue;
                int is_limit;
                test_for(&checks[ci], &stages[si], &is_limit);
                enum verdict *v = &card->v[si][pass == PLAIN ? ci : NCHECKS + pass - 1];
                if (pass == ASAN && !ok)
                    reports_show(si * NCHECKS + ci, msg);
                if (pass != PLAIN)
                    *v = (*v == FAILED || !ok) ? FAILED : PASSED;
                else
                    *v = is_limit ? (ok ? LIMIT_OK : LIMIT_FAILED) : (ok ? PASSED : FAILED);
            }
        }
    }
}

/* Run one suite in its own runner (so Check prints a summary for it) and
 * file each result in the report card. */
static void run_suite(Suite *s, struct card *card)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int n = srunner_ntests_run(sr);
    TestResult **res = srunner_results(sr);
    for (int r = 0; r < n; r++) {
        int ok = tr_rtype(res[r]) == CK_PASS;
        *(ok ? &card->passed : &card->failed) += 1;
        file_result(card, tr_tcname(res[r]), ok, tr_msg(res[r]));
    }
    free(res);
    srunner_free(sr);
}

static const char *const pass_names[NPASSES] = {"", "short", "valgrind", "asan"};

/* The reliability table (-m FILE), which the top README shows: every
 * stage against the checks that play a hostile peer or a fault, and the
 * passes that hunt memory and undefined-behaviour bugs; in Markdown, one
 * line per column saying what it does after the table. */
static const struct {
    const char *column;     /* a check's name or a pass's */
    const char *what;
} hostile[] = {
    {"reset", "a client resets its connection mid-echo"},
    {"resets", "10,000 connections reset mid-echo, 100 at a time: no descriptor leaked"},
    {"idlers", "1,000 silent peers (05: 900) and 100 sending a byte a second: newcomers served"},
    {"backpr", "a client that sends and never reads: bounded memory, others served"},
    {"flood", "connections past the descriptor limit: `server busy`, no spin"},
    {"nofd", "no descriptor left at all: `server busy`, then served again"},
    {"burst", "10,000 datagrams of 0 to 65,507 bytes at once: none cut, every loss counted"},
    {"termall", "SIGTERM amid 100 transfers: exit 0 within 1 s; under valgrind, nothing left open"},
    {"badsrv", "the client against servers that go silent, hang up, reset or lie"},
    {"waits", "the client against a silent server and a black hole: bounded waits"},
    {"faults", "system calls that fail (`setsockopt`, `getsockname`, `getpeername`)"},
    {"logfull", "a log nobody reads: service and shutdown go on"},
    {"httpd", "malformed and slow (slowloris) HTTP requests"},
    {"short", "short reads and writes and `EINTR` on every call, in the I/O checks"},
    {"valgrind", "memcheck: no invalid access, no leak"},
    {"asan", "built with AddressSanitizer + UBSan: no report in the marked checks (I/O, storms)"},
};
#define NHOSTILE ((int)(sizeof hostile / sizeof hostile[0]))

/* The report card's column called NAME. */
static int column_named(const char *name)
{
    for (int ci = 0; ci < NCHECKS + NPASSES - 1; ci++)
        if (strcmp(ci < NCHECKS ? checks[ci].name : pass_names[ci - NCHECKS + 1], name) == 0)
            return ci;
    fprintf(stderr, "harness: the reliability table names %s, not a column\n", name);
    exit(1);
}

static void write_reliability(const struct card *card, const char *path)
{
    static const char *const word[] = {"not run", "-", "yes", "FAIL", "limit", "FAIL"};
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "harness: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fprintf(f, "| stage |");
    for (int h = 0; h < NHOSTILE; h++)
        fprintf(f, " %s |", hostile[h].column);
    fprintf(f, "\n|---|");
    for (int h = 0; h < NHOSTILE; h++)
        fprintf(f, "---|");
    fprintf(f, "\n");
    for (int si = 0; si < NSTAGES; si++) {
        fprintf(f, "| %s |", stage_name(&stages[si]));
        for (int h = 0; h < NHOSTILE; h++)
            fprintf(f, " %s |", word[card->v[si][column_named(hostile[h].column)]]);
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
    for (int h = 0; h < NHOSTILE; h++)
        fprintf(f, "- `%s`: %s\n", hostile[h].column, hostile[h].what);
    if (fclose(f) != 0) {
        fprintf(stderr, "harness: %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void print_report_card(const struct card *card)
{
    static const char *const word[] = {".", "-", "pass", "FAIL", "limit", "FAIL"};
    printf("\nreport card  ");
    for (int ci = 0; ci < NCHECKS + NPASSES - 1; ci++)
        printf(" %-7s", ci < NCHECKS ? checks[ci].name : pass_names[ci - NCHECKS + 1]);
    printf("\n");
    for (int si = 0; si < NSTAGES; si++) {
        printf("%-13s", stage_name(&stages[si]));
        for (int ci = 0; ci < NCHECKS + NPASSES - 1; ci++)
            printf(" %-7s", word[card->v[si][ci]]);
        printf("\n");
    }
    printf("pass: claimed and shown; limit: a documented limitation shown to hold;\n"
           "-: does not apply; .: not run (filtered out, valgrind or raw sockets missing, no -A);\n"
           "short: the marked checks again with short reads/writes and EINTR injected;\n"
           "valgrind: the marked checks again under memcheck;\n"
           "asan: the marked checks again built with AddressSanitizer + UBSan\n\n");
}

/* Add the test case for check CI of stage SI in PASS to suite S. */
static void add_case(Suite *s, struct card *card, enum pass pass, int si, int ci)
{
    int is_limit;
    test_for(&checks[ci], &stages[si], &is_limit);
    char *name = card->names[pass][si][ci];
    snprintf(name, sizeof card->names[0][0][0], "%s:%s%s%s%s", stage_name(&stages[si]),
             checks[ci].name, is_limit ? " (limitation)" : "", pass ? " in " : "",
             pass_names[pass]);
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, pass == VALGRIND ? 300 : pass == ASAN ? 120 : 60);
    tcase_add_loop_test(tc, pass == ASAN ? run_sanitized : run_check, si * NCHECKS + ci,
                        si * NCHECKS + ci + 1);
    suite_add_tcase(s, tc);
}

/* What -s, -c, -V, -P, -A, -p and the machine allow to run. */
struct filter {
    const char *stage, *check;
    int valgrind, forge, plain_only, asan;
    int only;                   /* -p: this pass only, or -1 */
};

/* Does check CI of stage SI run in PASS? Marks what does not apply. */
static int selected(const struct filter *f, struct card *card, enum pass pass, int si, int ci)
{
    int is_limit;
    if (test_for(&checks[ci], &stages[si], &is_limit) == NULL) {
        card->v[si][ci] = NOT_APPLICABLE;
        return 0;
    }
    if (pass != PLAIN && !(checks[ci].passes & (1u << pass)))
        return 0;
    if (f->stage != NULL && strcmp(f->stage, stage_name(&stages[si])) != 0)
        return 0;
    if (f->check != NULL && strcmp(f->check, checks[ci].name) != 0)
        return 0;
    return !checks[ci].forges || f->forge;
}

static void run_tools(struct card *card)
{
    Suite *s = suite_create("tools");
    /* Check keeps the name pointer, not a copy: one buffer per tool. */
    static char names[NTOOLS][48];
    for (int t = 0; t < NTOOLS; t++) {
        char *name = names[t];
        snprintf(name, sizeof names[t], "tools:%s", tools[t].name);
        TCase *tc = tcase_create(name);
        tcase_add_loop_test(tc, run_tool, t, t + 1);
        suite_add_tcase(s, tc);
    }
    run_suite(s, card);
}

/* Every pass: a suite per stage in the plain pass, one suite for each
 * extra pass; the tools after the plain pass. */
static void run_passes(const struct filter *f, struct card *card)
{
    for (enum pass pass = PLAIN; pass < NPASSES; pass++) {
        if ((pass == VALGRIND && !f->valgrind) || (pass == ASAN && !f->asan) ||
            (pass != PLAIN && f->plain_only) || (f->only >= 0 && (int)pass != f->only))
            continue;
        cfg.pass = pass;
        Suite *extra = NULL;
        for (int si = 0; si < NSTAGES; si++) {
            Suite *s = NULL;
            for (int ci = 0; ci < NCHECKS; ci++) {
                if (!selected(f, card, pass, si, ci))
                    continue;
                if (pass != PLAIN && extra == NULL)
                    extra = suite_create(pass_names[pass]);
                if (s == NULL)
                    s = pass != PLAIN ? extra : suite_create(stage_name(&stages[si]));
                add_case(s, card, pass, si, ci);
            }
            if (pass == PLAIN && s != NULL)
                run_suite(s, card);
        }
        if (pass == PLAIN && f->stage == NULL && (f->check == NULL || !strcmp(f->check, "tools")))
            run_tools(card);
        if (extra != NULL)
            run_suite(extra, card);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: harness [-r ROOT] [-s STAGE] [-c CHECK] [-V] [-P] [-A DIR] [-p PASS]\n"
                    "               [-m FILE]\n"
                    "  -r ROOT   where the chapter directories are (default ..)\n"
                    "  -s STAGE  run only this stage (e.g. 02-tcp-udp)\n"
                    "  -c CHECK  run only this check (a report card column, or tools)\n"
                    "  -V        skip the valgrind pass\n"
                    "  -P        the plain pass only (no short-I/O, no valgrind, no asan)\n"
                    "  -A DIR    the asan pass, against DIR: the chapter directories built\n"
                    "            with AddressSanitizer + UBSan (tests/asan.sh: build/asan)\n"
                    "  -p PASS   run only this pass: plain, short, valgrind or asan\n"
                    "  -m FILE   write the reliability table (Markdown) to FILE\n");
    exit(2);
}

/* -p NAME: which pass ("plain" for the first, which has no column). */
static int pass_named(const char *name)
{
    for (int pass = 0; pass < NPASSES; pass++)
        if (strcmp(name, pass == PLAIN ? "plain" : pass_names[pass]) == 0)
            return pass;
    usage();
    return -1;
}

/* The ASAN pass: a directory for the reports, a subdirectory per test case
 * (reports_open()); at the end, what has none is removed. */
static void reports_init(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(cfg.reports, sizeof cfg.reports, "%s/harness-asan.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    if (mkdtemp(cfg.reports) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", cfg.reports, strerror(errno));
        exit(1);
    }
}

/* nftw() passes its callback nothing of ours: the count is kept here. */
static int reports_left;

/* For nftw(), deepest first: count the reports, remove what is empty. */
static int clear_reports(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if (type == FTW_DP)
        rmdir(path);            /* fails, and should, where a report is */
    else
        reports_left++;
    return 0;
}

static void reports_done(void)
{
    nftw(cfg.reports, clear_reports, 16, FTW_DEPTH | FTW_PHYS);
    if (reports_left > 0)
        printf("NOTICE: the sanitizers' reports, whole: %s\n", cfg.reports);
}

/* Absolute path of ROOT/tests/NAME into OUT. */
static void shim_path(const char *name, char *out)
{
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/tests/%s", cfg.root, name);
    if (realpath(rel, out) == NULL) {
        fprintf(stderr, "harness: %s: %s (run make)\n", rel, strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static struct card card;
    struct filter f = {.valgrind = 1, .only = -1};
    const char *reliability = NULL;
    int opt;

    _Static_assert(sizeof card.names[0][0][0] >= 48, "test case names fit");
    _Static_assert(NCHECKS <= 48 && NSTAGES <= 16, "the report card fits a wide terminal");
    while ((opt = getopt(argc, argv, "r:s:c:VPA:p:m:")) != -1) {
        switch (opt) {
        case 'r': cfg.root = optarg; break;
        case 's': f.stage = optarg; break;
        case 'c': f.check = optarg; break;
        case 'V': f.valgrind = 0; break;
        case 'P': f.plain_only = 1; break;
        case 'A': cfg.asan_root = optarg; f.asan = 1; break;
        case 'p': f.only = pass_named(optarg); break;
        case 'm': reliability = optarg; break;
        default: usage();
        }
    }
    if (f.only == ASAN && !f.asan)
        usage();
    struct stat sb;
    if (f.asan && (stat(cfg.asan_root, &sb) < 0 || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "harness: -A %s: no such directory (tests/asan.sh builds build/asan)\n",
                cfg.asan_root);
        exit(1);
    }
    signal(SIGPIPE, SIG_IGN);
    shim_path("shortio.so", cfg.shortio);
    shim_path("faults.so", cfg.faults);
    if (f.valgrind && system("valgrind --version >/dev/null 2>&1") != 0) {
        printf("NOTICE: valgrind not found: the valgrind pass is skipped\n");
        f.valgrind = 0;
    }
    f.forge = can_forge();
    if (!f.forge)
        printf("NOTICE: no raw sockets (not root): checks that forge packets are skipped\n");
    if (f.asan)
        reports_init();
    run_passes(&f, &card);
    if (f.asan)
        reports_done();
    print_report_card(&card);
    if (reliability != NULL)
        write_reliability(&card, reliability);
    printf("harness: %d passed, %d failed\n", card.passed, card.failed);
    return card.failed == 0 && card.passed > 0 ? 0 : 1;
}
