/*
 * A flood from one address, for run.py's `switchboard+flood` target (see flood.py, which
 * this replaces when gcc is there): the first datagram carries a scanner's User-Agent
 * (`friendly-scanner`), which gets the address blocked at once by threat detection; then
 * SIP-sized datagrams follow at RATE per second, sent 64 at a time with sendmmsg so that
 * the flooder itself takes as little of the machine as it can, until SIGTERM. Prints how
 * many it sent.
 *
 *     gcc -O2 -o flood bench/flood.c && ./flood 127.0.0.2 127.0.0.1 5070 50000
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int request(char *buf, size_t len, const char *src, const char *ua) {
    return snprintf(buf, len,
        "REGISTER sip:bench.example SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK-flood\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:100@bench.example>;tag=f\r\nTo: <sip:100@bench.example>\r\n"
        "Call-ID: flood@%s\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@%s:5060>\r\n"
        "User-Agent: %s\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", src, src, src, ua);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s SOURCE_IP TARGET_IP TARGET_PORT RATE\n", argv[0]);
        return 2;
    }
    long rate = atol(argv[4]);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    inet_pton(AF_INET, argv[1], &src.sin_addr);
    inet_pton(AF_INET, argv[2], &dst.sin_addr);
    dst.sin_port = htons((unsigned short)atoi(argv[3]));
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
        perror("socket");
        return 1;
    }
    signal(SIGTERM, on_term);
    char first[1024], junk[1024];
    send(fd, first, request(first, sizeof first, argv[1], "friendly-scanner"), 0);
    usleep(200000);
    int len = request(junk, sizeof junk, argv[1], "Bench/1.0");
    struct iovec iov = {.iov_base = junk, .iov_len = (size_t)len};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0;
    double start = now();
    while (!stop) {
        long due = (long)((now() - start) * rate);
        while (sent < due) {
            int n = (int)(due - sent < BATCH ? due - sent : BATCH);
            int done = sendmmsg(fd, msgs, (unsigned)n, 0);
            /* A full buffer loses datagrams: they count as sent, the flood goes on. */
            sent += done > 0 ? done : n;
        }
        usleep(1000);
    }
    double elapsed = now() - start;
    printf("sent %ld datagrams in %.2f s (%.0f/s)\n", sent, elapsed, sent / elapsed);
    return 0;
}
