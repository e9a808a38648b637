/*
 * resolve.c - names to addresses, the way a modern program does it.
 *
 * getaddrinfo() is the one call to use: it returns every address of a name,
 * IPv6 and IPv4 alike, ready to hand to socket()/connect(). The old
 * gethostbyname() knows only IPv4, returns a pointer into static storage
 * (not thread-safe), and reports errors through h_errno, not errno.
 *
 * usage: resolve            this host's name and its addresses, if it has any
 *        resolve NAME...    every address of each NAME
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROG "resolve"

#ifndef HOST_NAME_MAX
#define HOST_NAME_MAX 255
#endif

/* Print "  IPv4 ADDR" / "  IPv6 ADDR" for each address of NAME. Returns 0,
 * or the getaddrinfo() error (for the caller to report). */
static int print_addresses(const char *name)
{
    struct addrinfo hints = {0}, *res, *ai;
    char text[INET6_ADDRSTRLEN];

    hints.ai_family = AF_UNSPEC;       /* IPv4 and IPv6 */
    hints.ai_socktype = SOCK_STREAM;   /* else each address comes 3 times */
    hints.ai_flags = AI_CANONNAME;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0)
        return rc;
    printf("%s", name);
    if (res->ai_canonname != NULL && strcmp(res->ai_canonname, name) != 0)
        printf(" (canonical name %s)", res->ai_canonname);
    printf("\n");
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        const void *bin;
        if (ai->ai_family == AF_INET6)
            bin = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        else
            bin = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        inet_ntop(ai->ai_family, bin, text, sizeof text);
        printf("  %s %s\n", ai->ai_family == AF_INET6 ? "IPv6" : "IPv4", text);
    }
    freeaddrinfo(res);
    return 0;
}

/* Resolver errors have their own strings: gai_strerror, not strerror. */
static int report(const char *name, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", PROG, name, gai_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    int failed = 0;

    init_program(PROG);
    if (argc > 1 && argv[1][0] == '-') {
        fprintf(stderr, "usage: %s [NAME...]\n", PROG);
        return 2;
    }
    if (argc == 1) {
        char host[HOST_NAME_MAX + 1];
        if (gethostname(host, sizeof host) < 0) {
            perror(PROG ": gethostname");
            return 1;
        }
        printf("this host is called %s\n", host);
        /* A machine's own name need not resolve: a minimal install's
         * /etc/hosts knows only localhost, and no DNS may know the name.
         * That is an answer about this host, not a failure. */
        int rc = print_addresses(host);
        if (rc == EAI_NONAME || rc == EAI_FAIL || rc == EAI_AGAIN)
            printf("%s has no addresses (%s)\n", host, gai_strerror(rc));
        else if (rc != 0)
            failed = report(host, rc);
    }
    for (int i = 1; i < argc; i++) {
        int rc = print_addresses(argv[i]);
        if (rc != 0)
            failed = report(argv[i], rc);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: write to stdout: %s\n", PROG, strerror(errno));
        return 1;
    }
    return failed ? 1 : 0;
}
