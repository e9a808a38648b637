/*
 * http_cases.h - what a fake HTTP server sends http_get, and what http_get
 * must make of it: one row per case. checks_http.c plays the server: it
 * checks the request line asks for TARGET, sends the pieces of RESP in
 * order (each dribbled out 7 bytes at a time, except a repeated piece,
 * which goes out whole REPEAT times), then closes or keeps the connection
 * open, and compares http_get's exit code, stdout and stderr.
 */
#ifndef HTTP_CASES_H
#define HTTP_CASES_H

#include <stddef.h>     /* NULL: the header stands on its own */

struct http_case {
    const char *what, *path;
    const char *target;     /* the request line must ask for this */
    const char *resp[4];    /* pieces of the response, NULL-terminated */
    unsigned repeat;        /* resp[1] is sent this many times (0: once) */
    int close_after;        /* close after the response, or keep it open */
    const char *timeout;    /* http_get -T this (NULL: the default) */
    int want_code;
    const char *want_out;   /* exact stdout, if not NULL */
    const char *want_err;   /* part of stderr, if not NULL */
};

static const struct http_case http_cases[] = {
    {"Content-Length, connection left open", "/a/b?c=d", "/a/b?c=d",
     {"HTTP/1.1 200 OK\r\nContent-Length: 26\r\nContent-Type: text/plain\r\n\r\n",
      "abcdefghijklmnopqrstuvwxyz"}, 0, 0, NULL, 0,
     "HTTP/1.1 200 OK\nContent-Length: 26\nContent-Type: text/plain\n\n"
     "abcdefghijklmnopqrstuvwxyz", NULL},
    {"no Content-Length: the body ends when the server closes", "", "/",
     {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "until ", "the end"}, 0, 1, NULL, 0,
     "HTTP/1.1 200 OK\nConnection: close\n\nuntil the end", NULL},
    {"chunked, connection left open; no path, a query and a fragment", "?q=1#top", "/?q=1",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"}, 0, 0, NULL, 0,
     "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nhello, world", NULL},
    {"an interim 103 before the real response", "/", "/",
     {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}, 0, 0, NULL, 0,
     "HTTP/1.1 103 Early Hints\nLink: </a.css>\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok",
     NULL},
    {"a 404 is a complete answer: printed, exit 0 (like curl without -f)", "/missing",
     "/missing", {"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"}, 0, 0, NULL,
     0, "HTTP/1.1 404 Not Found\nContent-Length: 9\n\nnot found", NULL},
    {"the server closes before the promised body arrived", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "only ten.."}, 0, 1, NULL, 1,
     NULL, "closed after 10 of 100 body bytes"},
    {"not HTTP at all", "/", "/", {"SSH-2.0-OpenSSH\r\n"}, 0, 1, NULL, 1, NULL,
     "not an HTTP response"},
    {"a Content-Length that is not a length", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabc"}, 0, 1, NULL, 1, NULL,
     "bad header 'Content-Length: -5'"},
    {"a chunk size that is not hex digits", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"},
     0, 1, NULL, 1, NULL, "bad chunk size line '0x5'"},
    {"...nor is hex digits followed by garbage", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n"},
     0, 1, NULL, 1, NULL, "bad chunk size line '5 x'"},
    {"a chunk extension, with spaces or tabs before its ';', is ignored", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      "5 ;a=b\r\nhello\r\n7\t;q=\"x\"\r\n, world\r\n0;last\r\n\r\n"}, 0, 0, NULL, 0,
     "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nhello, world", NULL},

    /* Heads: one budget for all heads of a response, and each head on its own. */
    {"100 Continue forever: all heads together have a size limit", "/", "/",
     {"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}, 5000, 0, NULL, 1, NULL,
     "http_get: response heads larger than 65536 bytes"},
    {"trailers forever: they count as heads too", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
      "X-Trailer: more\r\n", "\r\n"}, 5000, 0, NULL, 1,
     "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nok",
     "http_get: response heads larger than 65536 bytes"},
    {"a 103's Content-Length says nothing about the 200 after it", "/", "/",
     {"HTTP/1.1 103 Early Hints\r\nContent-Length: 2\r\n\r\n",
      "HTTP/1.1 200 OK\r\n\r\n", "until the end"}, 0, 1, NULL, 0,
     "HTTP/1.1 103 Early Hints\nContent-Length: 2\n\nHTTP/1.1 200 OK\n\nuntil the end",
     NULL},

    /* Numbers and words exactly as RFC 9112 writes them. */
    {"a Content-Length with a sign", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"}, 0, 1, NULL, 1, NULL,
     "http_get: bad header 'Content-Length: +3'"},
    {"two different Content-Lengths", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 5\r\n\r\nabcde"}, 0, 1,
     NULL, 1, NULL, "http_get: two different Content-Length values: 3 and 5"},
    {"the same Content-Length twice, as a list", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length:\t3 , 3\t\r\n\r\nabc"}, 0, 0, NULL, 0,
     "HTTP/1.1 200 OK\nContent-Length:\t3 , 3\t\n\nabc", NULL},
    {"a status of four digits", "/", "/",
     {"HTTP/1.1 1004 Odd\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
     0, 1, NULL, 1, NULL, "http_get: not an HTTP response: 'HTTP/1.1 1004 Odd'"},
    {"a negative status", "/", "/",
     {"HTTP/1.1 -12 Odd\r\nContent-Length: 2\r\n\r\nok"}, 0, 1, NULL, 1, NULL,
     "http_get: not an HTTP response: 'HTTP/1.1 -12 Odd'"},
    {"chunked only as the last coding: notchunked-gzip is read until close", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked-gzip\r\n\r\n",
      "5\r\nhello\r\n0\r\n\r\n"}, 0, 1, NULL, 0,
     "HTTP/1.1 200 OK\nTransfer-Encoding: notchunked-gzip\n\n5\r\nhello\r\n0\r\n\r\n", NULL},
    {"names and codings in any case, spaces and tabs around values", "/", "/",
     {"HTTP/1.1 200 OK\r\ntransfer-encoding:\t Chunked \r\n\r\n",
      "5\r\nhello\r\n0\r\n\r\n"}, 0, 0, NULL, 0,
     "HTTP/1.1 200 OK\ntransfer-encoding:\t Chunked \n\nhello", NULL},
    {"Transfer-Encoding wins over Content-Length, also when it is not chunked", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\n",
      "until the end"}, 0, 1, NULL, 0,
     "HTTP/1.1 200 OK\nContent-Length: 2\nTransfer-Encoding: gzip\n\nuntil the end", NULL},
    {"a CR inside a line: a line break to some readers, a character to others", "/", "/",
     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\r\n\r\n3\r\nabc\r\n0\r\n\r\n"}, 0, 1,
     NULL, 1, NULL, "http_get: malformed line: a CR inside it"},

    /* No wait without an end. */
    {"the head, then silence with the connection open (-T 0.5)", "/", "/",
     {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"}, 0, 0, "0.5", 1,
     "HTTP/1.1 200 OK\nContent-Length: 10\n\n",
     "http_get: no answer within 0.5 s while waiting for the body"},
};

#endif
