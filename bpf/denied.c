// Counts netfilter drops per {policy id, source address}. Loaded by BCC from this file (collector/bpf_loader.py).
//
// Every kernel-version-dependent number arrives as a -D define computed at load time:
//   ARG_SKB, ARG_REASON     positions of the skb and the drop reason among the tracepoint's arguments (BTF)
//   NETFILTER_DROP_REASON   enum skb_drop_reason value, from the tracepoint's format file (or BTF)
//   SPAN_START, SPAN_LEN    one contiguous slice of struct sk_buff holding dev, sk, _skb_refdst, len, mark, head,
//                           network_header, mac_header and protocol (offsets from /sys/kernel/btf/vmlinux),
//                           read with one helper call
//   OFF_LEN, OFF_MARK, OFF_HEAD, OFF_NH, OFF_MAC, OFF_PROTOCOL, OFF_DEV, OFF_SK, OFF_DST
//                           those members' offsets inside the slice
//   NETDEV_NET, SOCK_NET, DST_DEV, NET_INUM   net_device.nd_net, sock's skc_net, dst_entry.dev, net.ns.inum:
//                           the namespace inode of the drop, from the skb's device, else its socket, else its route
//   MARK_MASK               bits of skb->mark that carry the policy id
//   MAP_SIZE, OVERFLOW_SIZE bounds of the counting maps
//   FLOW_LOGS, FLOW_MAP_SIZE   defined only with --flow-logs: per-flow counting (below); without it the program has
//                           no flow map and no per-packet flow work
//
// Two counting maps are double-buffered behind one-slot map-in-map arrays: the program always counts into
// whatever map slot 0 points at, and userspace swaps the slot before draining. A map-in-map update waits
// for running programs (synchronize_rcu), so the drained map has no writer and nothing is lost between
// reading a value and deleting it.

#include <uapi/linux/errno.h>

#define FAMILY_OTHER 0
#define FAMILY_INET 4
#define FAMILY_INET6 6

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BE16(x) __builtin_bswap16(x)
#else
#define BE16(x) (x)
#endif

struct drop_key {
    u32 policy;
    u32 netns;  // inode of the network namespace the drop happened in; 0 when none could be read
    u8 family;
    u8 pad[7];
    u8 addr[16];
} __attribute__((aligned(8)));

struct overflow_key {
    u32 policy;
    u32 netns;
};

struct drop_value {
    u64 packets;
    u64 bytes;
};

BPF_TABLE("percpu_hash", struct drop_key, struct drop_value, drops_a, MAP_SIZE);
BPF_TABLE("percpu_hash", struct drop_key, struct drop_value, drops_b, MAP_SIZE);
BPF_ARRAY_OF_MAPS(drops_slot, "drops_a", 1);

// Per policy and namespace: drops that found the counting map full.
BPF_TABLE("percpu_hash", struct overflow_key, struct drop_value, overflow_a, OVERFLOW_SIZE);
BPF_TABLE("percpu_hash", struct overflow_key, struct drop_value, overflow_b, OVERFLOW_SIZE);
BPF_ARRAY_OF_MAPS(overflow_slot, "overflow_a", 1);

// Last resort when the overflow map is full too: one monotonic per-CPU counter, never reset.
BPF_PERCPU_ARRAY(unplaced, struct drop_value, 1);

// Entries ever inserted into the counting and overflow maps (per CPU, never reset), and entries userspace has
// drained (written by userspace only): while the two are equal every map is empty and a drain reads nothing,
// however many slots the maps have.
BPF_PERCPU_ARRAY(inserts, u64, 1);
BPF_ARRAY(drained, u64, 1);

// A per-CPU cache of the last key: a run of drops from one source (a flood, a retrying client) adds here
// without a hash lookup, and reaches the hash when the key changes or the drain reads it. Two generations;
// userspace flips `generation` before the map-in-map swap, whose wait covers the cache too.
struct drop_cache {
    struct drop_key key;
    u64 packets;
    u64 bytes;
};
BPF_ARRAY(generation, u32, 1);
BPF_PERCPU_ARRAY(cache, struct drop_cache, 2);

static __always_inline int count_in(void *map, void *key, u64 packets, u64 bytes) {
    struct drop_value *value = bpf_map_lookup_elem(map, key);
    if (value) {
        value->packets += packets;
        value->bytes += bytes;
        return 0;
    }
    struct drop_value first = {.packets = packets, .bytes = bytes};
    int err = bpf_map_update_elem(map, key, &first, BPF_NOEXIST);
    if (err == 0) {
        u32 zero = 0;
        u64 *inserted = inserts.lookup(&zero);
        if (inserted)
            *inserted += 1;
        return 0;
    }
    if (err != -EEXIST)
        return err;
    // Another CPU inserted the key first; this CPU's slot of a per-CPU entry starts at zero.
    value = bpf_map_lookup_elem(map, key);
    if (!value)
        return -ENOENT;
    value->packets += packets;
    value->bytes += bytes;
    return 0;
}

static __always_inline void count(struct drop_key *key, u64 packets, u64 bytes) {
    u32 slot = 0;
    void *drops = drops_slot.lookup(&slot);
    if (drops && count_in(drops, key, packets, bytes) == 0)
        return;

    struct overflow_key policy = {.policy = key->policy, .netns = key->netns};
    void *overflow = overflow_slot.lookup(&slot);
    if (overflow && count_in(overflow, &policy, packets, bytes) == 0)
        return;

    struct drop_value *last = unplaced.lookup(&slot);
    if (last) {
        last->packets += packets;
        last->bytes += bytes;
    }
}

#ifdef FLOW_LOGS
// Per denied flow: {policy, namespace, protocol, addresses, ports (ICMP type and code)}, double-buffered like the
// counting map behind flows_slot, swapped with it by the same generation step. A flow that finds the map full is
// counted per policy and namespace in flow_overflow; when that is full too, in flow_unplaced (monotonic). Every
// entry inserted counts in `inserts` like the other maps, so the drain's bookkeeping covers them.
struct flow_key {
    u32 policy;
    u32 netns;
    u8 family;
    u8 proto;
    u16 sport;  // host order; ICMP: type
    u16 dport;  // host order; ICMP: code
    u8 pad[2];
    u8 saddr[16];
    u8 daddr[16];
} __attribute__((aligned(8)));

BPF_TABLE("percpu_hash", struct flow_key, struct drop_value, flows_a, FLOW_MAP_SIZE);
BPF_TABLE("percpu_hash", struct flow_key, struct drop_value, flows_b, FLOW_MAP_SIZE);
BPF_ARRAY_OF_MAPS(flows_slot, "flows_a", 1);
BPF_TABLE("percpu_hash", struct overflow_key, struct drop_value, flow_overflow_a, OVERFLOW_SIZE);
BPF_TABLE("percpu_hash", struct overflow_key, struct drop_value, flow_overflow_b, OVERFLOW_SIZE);
BPF_ARRAY_OF_MAPS(flow_overflow_slot, "flow_overflow_a", 1);
BPF_PERCPU_ARRAY(flow_unplaced, struct drop_value, 1);

// A per-CPU cache of the last flow, two generations, like the drop cache: a flood of one flow adds here without
// a hash lookup.
struct flow_cache {
    struct flow_key key;
    u64 packets;
    u64 bytes;
};
BPF_PERCPU_ARRAY(flow_cache, struct flow_cache, 2);

static __always_inline void count_flow_in_maps(struct flow_key *key, u64 packets, u64 bytes) {
    u32 slot = 0;
    void *flows = flows_slot.lookup(&slot);
    if (flows && count_in(flows, key, packets, bytes) == 0)
        return;
    struct overflow_key per_policy = {.policy = key->policy, .netns = key->netns};
    void *overflow = flow_overflow_slot.lookup(&slot);
    if (overflow && count_in(overflow, &per_policy, packets, bytes) == 0)
        return;
    struct drop_value *last = flow_unplaced.lookup(&slot);
    if (last) {
        last->packets += packets;
        last->bytes += bytes;
    }
}

static __always_inline void count_flow(u32 policy, u32 netns, u16 proto, u64 network, u64 bytes, u32 *gen) {
    struct flow_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.policy = policy;
    key.netns = netns;
    u8 l4 = 0;
    u64 transport = 0;
    if (proto == BE16(0x0800)) {
        u8 ip[20];
        if (bpf_probe_read_kernel(ip, sizeof(ip), (void *)network) == 0) {
            key.family = FAMILY_INET;
            l4 = ip[9];
            __builtin_memcpy(key.saddr, ip + 12, 4);
            __builtin_memcpy(key.daddr, ip + 16, 4);
            // ports only in a first (or unfragmented) fragment
            if (((ip[6] & 0x1f) | ip[7]) == 0)
                transport = network + (ip[0] & 0x0f) * 4;
        }
    } else if (proto == BE16(0x86DD)) {
        u8 ip[40];
        if (bpf_probe_read_kernel(ip, sizeof(ip), (void *)network) == 0) {
            key.family = FAMILY_INET6;
            l4 = ip[6];
            __builtin_memcpy(key.saddr, ip + 8, 16);
            __builtin_memcpy(key.daddr, ip + 24, 16);
            transport = network + 40;  // extension headers are not walked: such a flow has no ports
        }
    }
    key.proto = l4;
    if (transport && (l4 == 6 || l4 == 17 || l4 == 132)) {
        u16 ports[2];
        if (bpf_probe_read_kernel(ports, sizeof(ports), (void *)transport) == 0) {
            key.sport = BE16(ports[0]);
            key.dport = BE16(ports[1]);
        }
    } else if (transport && (l4 == 1 || l4 == 58)) {
        u8 icmp[2];
        if (bpf_probe_read_kernel(icmp, sizeof(icmp), (void *)transport) == 0) {
            key.sport = icmp[0];
            key.dport = icmp[1];
        }
    }

    struct flow_cache *cached = 0;
    if (gen) {
        u32 index = *gen & 1;
        cached = flow_cache.lookup(&index);
    }
    if (!cached) {
        count_flow_in_maps(&key, 1, bytes);
        return;
    }
    u64 *a = (u64 *)&cached->key;
    u64 *b = (u64 *)&key;
    if (a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5]) {
        cached->packets += 1;
        cached->bytes += bytes;
        return;
    }
    if (cached->packets)
        count_flow_in_maps(&cached->key, cached->packets, cached->bytes);
    __builtin_memcpy(&cached->key, &key, sizeof(key));
    cached->packets = 1;
    cached->bytes = bytes;
}
#endif

// The last device's namespace, per CPU, valid for one generation (one drain interval): a flood through one device
// skips the two dependent reads below. A device moved to another namespace mid-flood is seen within a drain.
struct netns_cache {
    u64 dev;
    u32 inum;
    u32 generation;
};
BPF_PERCPU_ARRAY(netns_seen, struct netns_cache, 1);

// The namespace a drop happened in: the skb's device (every hook but locally generated output), else its socket,
// else its route's device (_skb_refdst, whose low bit is a "no reference" flag).
static __always_inline u32 netns_lookup(u64 dev, u64 sk, u64 refdst) {
    u64 net = 0;
    if (dev)
        bpf_probe_read_kernel(&net, sizeof(net), (void *)(dev + NETDEV_NET));
    if (!net && sk)
        bpf_probe_read_kernel(&net, sizeof(net), (void *)(sk + SOCK_NET));
    if (!net && (refdst & ~1ULL)) {
        u64 route_dev = 0;
        bpf_probe_read_kernel(&route_dev, sizeof(route_dev), (void *)((refdst & ~1ULL) + DST_DEV));
        if (route_dev)
            bpf_probe_read_kernel(&net, sizeof(net), (void *)(route_dev + NETDEV_NET));
    }
    u32 inum = 0;
    if (net)
        bpf_probe_read_kernel(&inum, sizeof(inum), (void *)(net + NET_INUM));
    return inum;
}

static __always_inline u32 netns_of(u64 dev, u64 sk, u64 refdst, u32 gen) {
    u32 zero = 0;
    struct netns_cache *seen = netns_seen.lookup(&zero);
    if (seen && dev && seen->dev == dev && seen->generation == gen)
        return seen->inum;
    u32 inum = netns_lookup(dev, sk, refdst);
    if (seen && dev) {
        seen->dev = dev;
        seen->inum = inum;
        seen->generation = gen;
    }
    return inum;
}

// Attached raw (BPF_RAW_TRACEPOINT) to kfree_skb: the program gets the tracepoint's own arguments, without the
// cost of filling a perf trace record on every freed skb; their order comes from BTF (ARG_SKB, ARG_REASON).
// Not BCC's RAW_TRACEPOINT_PROBE: the installer attaches it itself, after the map-in-map slots are filled.
int count_drops(struct bpf_raw_tracepoint_args *ctx) {
    if ((u32)ctx->args[ARG_REASON] != NETFILTER_DROP_REASON)
        return 0;

    u8 span[SPAN_LEN];
    if (bpf_probe_read_kernel(span, sizeof(span), (u8 *)ctx->args[ARG_SKB] + SPAN_START))
        __builtin_memset(span, 0, sizeof(span));  // still counted, as an unknown source of 0 bytes

    u32 len, mark;
    u64 head, dev, sk, refdst;
    u16 nh, mac, proto;
    __builtin_memcpy(&dev, span + OFF_DEV, sizeof(dev));
    __builtin_memcpy(&sk, span + OFF_SK, sizeof(sk));
    __builtin_memcpy(&refdst, span + OFF_DST, sizeof(refdst));
    __builtin_memcpy(&mac, span + OFF_MAC, sizeof(mac));
    __builtin_memcpy(&len, span + OFF_LEN, sizeof(len));
    __builtin_memcpy(&mark, span + OFF_MARK, sizeof(mark));
    __builtin_memcpy(&head, span + OFF_HEAD, sizeof(head));
    __builtin_memcpy(&nh, span + OFF_NH, sizeof(nh));
    __builtin_memcpy(&proto, span + OFF_PROTOCOL, sizeof(proto));  // __be16, unlike the tracepoint's copy

    struct drop_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.policy = mark & MARK_MASK;
    u32 zero = 0;
    u32 *gen = generation.lookup(&zero);
    key.netns = netns_of(dev, sk, refdst, gen ? *gen : 0);

    u64 network = head + nh;
    // nft counters count skb->len at every hook: from the network header at the IP hooks, from the MAC header
    // at netdev egress, so the figure equals the dropping rule's own counter wherever it dropped.
    u64 bytes = len;

    // An 802.1Q/802.1ad tag still in the frame (not offloaded to skb->vlan_tci): the tags follow the MAC
    // addresses; the inner ethertype says what the packet is, and the IP header follows the last tag.
    if ((proto == BE16(0x8100) || proto == BE16(0x88A8)) && mac != (u16)~0U) {
        u16 tags[4];  // TCI, inner type, TCI, inner type
        if (bpf_probe_read_kernel(tags, sizeof(tags), (void *)(head + mac + 14)) == 0) {
            proto = tags[1];
            network = head + mac + 18;
            if (proto == BE16(0x8100) || proto == BE16(0x88A8)) {
                proto = tags[3];
                network = head + mac + 22;
            }
        }
    }

    if (proto == BE16(0x0800)) {
        key.family = FAMILY_INET;
        if (bpf_probe_read_kernel(key.addr, 4, (void *)(network + 12)))
            key.family = FAMILY_OTHER;
    } else if (proto == BE16(0x86DD)) {
        key.family = FAMILY_INET6;
        if (bpf_probe_read_kernel(key.addr, 16, (void *)(network + 8))) {
            key.family = FAMILY_OTHER;
            __builtin_memset(key.addr, 0, sizeof(key.addr));
        }
    }

#ifdef FLOW_LOGS
    count_flow(key.policy, key.netns, proto, network, bytes, gen);
#endif

    if (!gen) {
        count(&key, 1, bytes);
        return 0;
    }
    u32 index = *gen & 1;
    struct drop_cache *cached = cache.lookup(&index);
    if (!cached) {
        count(&key, 1, bytes);
        return 0;
    }
    u64 *a = (u64 *)&cached->key;
    u64 *b = (u64 *)&key;
    if (a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]) {
        cached->packets += 1;
        cached->bytes += bytes;
        return 0;
    }
    if (cached->packets)
        count(&cached->key, cached->packets, cached->bytes);
    __builtin_memcpy(&cached->key, &key, sizeof(key));
    cached->packets = 1;
    cached->bytes = bytes;
    return 0;
}
