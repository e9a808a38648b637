/*
 * stages.c - print the stage table for scripts (bench.sh), so the table in
 * stages.h stays the one place that says what each stage is. Needs nothing
 * but libc, so `make bench` works before Check is installed.
 *
 * usage: stages [-b | -t]   one line per stage: NAME DIR TCP_SERVER
 *                           (the program, then any options it always
 *                           gets: "server -e"); -b: bench ones only,
 *                           as NAME DIR MOST TCP_SERVER [BENCH_OPTS],
 *                           MOST the most connections to bench it at;
 *                           -t: threaded ones only
 */
#include "stages.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int bench_only = argc == 2 && strcmp(argv[1], "-b") == 0;
    int threads_only = argc == 2 && strcmp(argv[1], "-t") == 0;

    if (argc > 2 || (argc == 2 && !bench_only && !threads_only)) {
        fprintf(stderr, "usage: stages [-b | -t]\n");
        return 2;
    }
    for (int i = 0; i < NSTAGES; i++)
        if (bench_only && stages[i].bench)
            printf("%s %s %d %s%s%s\n", stage_name(&stages[i]), stages[i].dir, stages[i].bench,
                   stages[i].tcp_server, stages[i].bench_opts ? " " : "",
                   stages[i].bench_opts ? stages[i].bench_opts : "");
        else if (!bench_only && (!threads_only || stages[i].threads))
            printf("%s %s %s\n", stage_name(&stages[i]), stages[i].dir, stages[i].tcp_server);
    return 0;
}
