// UDP flood over AF_PACKET for bench/collector: 60-byte frames (64 on the wire with the FCS), sent with
// sendmmsg in batches, bypassing the qdisc. Built by the benchmark with the machine's gcc.
//
// usage: flood IFNAME SRC_MAC DST_MAC SRC_IP DST_IP DPORT SOURCES SECONDS
//   SOURCES > 1: the source address cycles through SRC_IP, SRC_IP+1, ..., SRC_IP+SOURCES-1 (spoofed).
// Stops after SECONDS; prints "slices a b c ..." (frames sent in each whole second) then "sent N" (frames the
// kernel accepted).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME 60
#define PAYLOAD (FRAME - 14 - 20 - 8)

static void parse_mac(const char *text, uint8_t *mac) {
    unsigned v[6];
    if (sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
        fprintf(stderr, "flood: bad MAC address %s\n", text);
        exit(2);
    }
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
}

static uint16_t ip_checksum(const uint8_t *hdr) {
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += (uint32_t)(hdr[i] << 8 | hdr[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: flood IFNAME SRC_MAC DST_MAC SRC_IP DST_IP DPORT SOURCES SECONDS\n");
        return 2;
    }
    uint8_t smac[6], dmac[6];
    parse_mac(argv[2], smac);
    parse_mac(argv[3], dmac);
    struct in_addr src, dst;
    if (!inet_pton(AF_INET, argv[4], &src) || !inet_pton(AF_INET, argv[5], &dst)) {
        fprintf(stderr, "flood: bad IPv4 address\n");
        return 2;
    }
    uint16_t dport = (uint16_t)atoi(argv[6]);
    uint32_t sources = (uint32_t)strtoul(argv[7], NULL, 10);
    double seconds = atof(argv[8]);
    if (sources < 1) sources = 1;

    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("flood: socket"); return 1; }
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    struct sockaddr_ll ll = {0};
    ll.sll_family = AF_PACKET;
    ll.sll_ifindex = (int)if_nametoindex(argv[1]);
    if (!ll.sll_ifindex) { fprintf(stderr, "flood: no interface %s\n", argv[1]); return 1; }
    if (bind(fd, (struct sockaddr *)&ll, sizeof(ll))) { perror("flood: bind"); return 1; }

    static uint8_t frames[BATCH][FRAME];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        uint8_t *f = frames[i];
        memcpy(f, dmac, 6);
        memcpy(f + 6, smac, 6);
        f[12] = 0x08; f[13] = 0x00;
        struct iphdr *ip = (struct iphdr *)(f + 14);
        ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
        ip->tot_len = htons(FRAME - 14);
        ip->saddr = src.s_addr; ip->daddr = dst.s_addr;
        struct udphdr *udp = (struct udphdr *)(f + 34);
        udp->source = htons(40000); udp->dest = htons(dport); udp->len = htons(8 + PAYLOAD);
        memset(f + 42, 'z', PAYLOAD);
        ip->check = htons(ip_checksum(f + 14));
        iov[i].iov_base = f; iov[i].iov_len = FRAME;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint32_t base = ntohl(src.s_addr), next = 0;
    unsigned long long sent = 0, slice_start = 0;
    double start = now(), end = start + seconds, next_slice = start + 1.0;
    printf("slices");
    for (unsigned long iter = 0;; iter++) {
        if ((iter & 15) == 0) {
            double t = now();
            if (t >= next_slice) {
                printf(" %llu", sent - slice_start);
                slice_start = sent;
                next_slice += 1.0;
            }
            if (t >= end) break;
        }
        if (sources > 1) {
            for (int i = 0; i < BATCH; i++) {
                struct iphdr *ip = (struct iphdr *)(frames[i] + 14);
                ip->saddr = htonl(base + next);
                next = next + 1 == sources ? 0 : next + 1;
                ip->check = 0;
                ip->check = htons(ip_checksum(frames[i] + 14));
            }
        }
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) sent += (unsigned long long)n;
    }
    printf("\nsent %llu\n", sent);
    return 0;
}
