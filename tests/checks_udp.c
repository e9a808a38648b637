/*
 * checks_udp.c - the UDP echo servers: every datagram back whole, an
 * oversized one dropped (never echoed cut short), and one forged to come
 * from the server itself dropped (never echoed to itself for ever).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void check_udp_echo(const struct stage *st)
{
    struct server s = start_server(st->dir, st->udp_server, ARGS("-q"), NULL);
    int fd = udp_socket(s.port);
    static const size_t sizes[] = {0, 1, 512, 65507};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        udp_echo_check(fd, sizes[i], (unsigned)i);
    close(fd);
    assert_run_prints(st->dir, st->udp_client, NULL,
                      "udp_client: 65507-byte datagram echoed, all correct\n",
                      ARGS("-p", s.portstr, "-n", "65507"));
    assert_run_prints(st->dir, st->udp_client, "one\ntwo\n", "one\ntwo\n",
                      ARGS("-p", s.portstr));
    assert_run_prints(st->dir, st->udp_client, NULL, "\nnot empty\n",
                      ARGS("-p", s.portstr, "", "not empty"));
    stop_server_quietly(&s);

    /* A datagram bigger than the server's buffer is dropped, never echoed
     * cut short; the next one that fits is echoed as usual. */
    s = start_server(st->dir, st->udp_server, ARGS("-b", "512"), NULL);
    fd = udp_socket(s.port);
    char big[513];
    memset(big, 'X', sizeof big);
    ck_assert(send(fd, big, sizeof big, 0) == (ssize_t)sizeof big);
    udp_echo_check(fd, 512, 9);
    close(fd);
    char *err = stop_server(&s);
    assert_contains(err, "sent 513 bytes, more than our 512-byte buffer: dropped", "log");
    assert_contains(err, "1 too large dropped", "summary");
    free(err);
}

int can_forge(void)
{
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

/* Send a UDP datagram from 127.0.0.1:FROM to 127.0.0.1:TO that we did
 * not bind FROM for: a raw socket writes the headers itself. The kernel
 * fills in the IP checksum and length; a UDP checksum of 0 means none. */
static void forge_datagram(int from, int to, const char *payload)
{
    struct {
        struct iphdr ip;
        struct udphdr udp;
        char data[64];
    } pkt = {0};
    size_t len = strlen(payload);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to)};

    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    pkt.ip.version = 4;
    pkt.ip.ihl = 5;
    pkt.ip.ttl = 64;
    pkt.ip.protocol = IPPROTO_UDP;
    pkt.ip.saddr = dst.sin_addr.s_addr;
    pkt.ip.daddr = dst.sin_addr.s_addr;
    pkt.udp.source = htons((uint16_t)from);
    pkt.udp.dest = htons((uint16_t)to);
    pkt.udp.len = htons((uint16_t)(sizeof pkt.udp + len));
    memcpy(pkt.data, payload, len);
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    ck_assert_msg(fd >= 0, "raw socket: %s", strerror(errno));
    size_t total = sizeof pkt.ip + sizeof pkt.udp + len;
    ck_assert(sendto(fd, &pkt, total, 0, (struct sockaddr *)&dst, sizeof dst) == (ssize_t)total);
    close(fd);
}

/* A datagram whose source is the server's own address and port: echoing
 * it would send it to the server itself, which would echo it again, for
 * ever, at full CPU. It must be dropped and counted, and the server go on
 * serving. */
void check_udp_self(const struct stage *st)
{
    struct server s = start_server(st->dir, st->udp_server, ARGS("-q"), NULL);
    forge_datagram(s.port, s.port, "round and round");
    int fd = udp_socket(s.port);
    udp_echo_check(fd, 100, 14);
    close(fd);
    char *err = stop_server(&s);
    assert_contains(err, " 1 datagrams echoed", "summary");
    assert_contains(err, " 1 from ourselves dropped", "summary");
    free(err);
}
