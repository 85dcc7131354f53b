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
//   TP_BTF                  defined when the program is loaded as a BTF-enabled tracepoint (tp_btf, see
//                           count_drops below); without it, a raw tracepoint program reading with helpers
//   FLOW_LOGS, FLOW_MAP_SIZE   defined only with --flow-logs: per-flow counting (below); without it the program has
//                           no flow map and no per-packet flow work
//
// Two counting maps are double-buffered behind one-slot map-in-map arrays: the program always counts into
// whatever map slot 0 points at, and userspace swaps the slot before draining. A map-in-map update waits
// for running programs (synchronize_rcu), so the drained map has no writer and nothing is lost between
// reading a value and deleting it.

#include <uapi/linux/errno.h>

// Kernel memory reads. As tp_btf the verifier knows the skb's type from BTF: a member read is one load it turns
// into a fault-safe one (a bad address reads as 0), pointers to structs keep their type, and pointers to other
// data (skb->head) are read-only untrusted memory, so even packet bytes need no helper call. As raw_tp every
// read is bpf_probe_read_kernel. probe64 is a helper read in both: a value BTF types as an integer (_skb_refdst)
// cannot be dereferenced directly.
static __always_inline u64 probe64(u64 addr) {
    u64 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)addr);
    return value;
}
#ifdef TP_BTF
#define LOAD64(addr) (*(u64 *)(addr))
#define LOAD32(addr) (*(u32 *)(addr))
#define COPY(dst, src, n) (__builtin_memcpy((dst), (const u32 *)(src), (n)), 0)
#else
static __always_inline u32 probe32(u64 addr) {
    u32 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)addr);
    return value;
}
#define LOAD64(addr) probe64(addr)
#define LOAD32(addr) probe32(addr)
#define COPY(dst, src, n) bpf_probe_read_kernel((dst), (n), (void *)(src))
#endif

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

// struct drop_key as four words, in memory order: {policy, netns}, {family, pad}, addr[0..7], addr[8..15]; the
// first word is struct flow_key's too, whose second is {family, proto, sport, dport, pad}. ADDR4_WORD: the word
// whose first four bytes in memory are those of an IPv4 address read as a u32.
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KEY_WORD0(policy, netns) ((u64)(policy) | (u64)(netns) << 32)
#define KEY_WORD1(family) ((u64)(family))
#define FLOW_WORD1(family, proto, sport, dport) \
    ((u64)(family) | (u64)(proto) << 8 | (u64)(sport) << 16 | (u64)(dport) << 32)
#define ADDR4_WORD(addr) ((u64)(addr))
#else
#define KEY_WORD0(policy, netns) ((u64)(policy) << 32 | (u64)(netns))
#define KEY_WORD1(family) ((u64)(family) << 56)
#define FLOW_WORD1(family, proto, sport, dport) \
    ((u64)(family) << 56 | (u64)(proto) << 48 | (u64)(sport) << 32 | (u64)(dport) << 16)
#define ADDR4_WORD(addr) ((u64)(addr) << 32)
#endif

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

// The words of a struct flow_key after {policy, netns}, in memory order: {family, proto, sport, dport, pad},
// saddr[0..7], saddr[8..15], daddr[0..7], daddr[8..15], read from the packet into registers; returns the family.
// The drop key is made from the same read (family, saddr), so one flow key always means one drop key.
static __always_inline u8 flow_words(u64 *f, u16 proto, u64 network) {
    u8 family = FAMILY_OTHER;
    u8 l4 = 0;
    u64 transport = 0;
    f[1] = f[2] = f[3] = f[4] = f[5] = 0;
    if (proto == BE16(0x0800)) {
        u32 ip[5];
        if (COPY(ip, network, sizeof(ip)) == 0) {
            const u8 *b = (const u8 *)ip;
            family = FAMILY_INET;
            l4 = b[9];
            f[2] = ADDR4_WORD(ip[3]);
            f[4] = ADDR4_WORD(ip[4]);
            // ports only in a first (or unfragmented) fragment
            if (((b[6] & 0x1f) | b[7]) == 0)
                transport = network + (b[0] & 0x0f) * 4;
        }
    } else if (proto == BE16(0x86DD)) {
        u64 ip[5];
        if (COPY(ip, network, sizeof(ip)) == 0) {
            family = FAMILY_INET6;
            l4 = ((const u8 *)ip)[6];
            f[2] = ip[1];
            f[3] = ip[2];
            f[4] = ip[3];
            f[5] = ip[4];
            transport = network + 40;  // extension headers are not walked: such a flow has no ports
        }
    }
    u16 sport = 0, dport = 0;
    if (transport && (l4 == 6 || l4 == 17 || l4 == 132)) {
        u16 ports[2];
        if (COPY(ports, transport, sizeof(ports)) == 0) {
            sport = BE16(ports[0]);
            dport = BE16(ports[1]);
        }
    } else if (transport && (l4 == 1 || l4 == 58)) {
        u8 icmp[2];
        if (COPY(icmp, transport, sizeof(icmp)) == 0) {
            sport = icmp[0];
            dport = icmp[1];
        }
    }
    f[1] = FLOW_WORD1(family, l4, sport, dport);
    return family;
}

// Adds one denied packet to this CPU's last-flow cache (or, without one, to the maps). Returns 1 when the flow is
// the one cached: the previous packet counted at this cache index on this CPU had it, hence also its drop key.
static __always_inline void set_flow_key(struct flow_key *key, const u64 *f) {
    u64 *k = (u64 *)key;
    k[0] = f[0];
    k[1] = f[1];
    k[2] = f[2];
    k[3] = f[3];
    k[4] = f[4];
    k[5] = f[5];
}

static __always_inline int count_flow(struct flow_cache *cached, const u64 *f, u64 bytes) {
    if (!cached) {
        struct flow_key key;
        set_flow_key(&key, f);
        count_flow_in_maps(&key, 1, bytes);
        return 0;
    }
    u64 *a = (u64 *)&cached->key;
    if (a[0] == f[0] && a[1] == f[1] && a[2] == f[2] && a[3] == f[3] && a[4] == f[4] && a[5] == f[5]) {
        cached->packets += 1;
        cached->bytes += bytes;
        return 1;
    }
    if (cached->packets)
        count_flow_in_maps(&cached->key, cached->packets, cached->bytes);
    set_flow_key(&cached->key, f);
    cached->packets = 1;
    cached->bytes = bytes;
    return 0;
}
#endif

#ifdef TP_BTF
// Members of the skb are read where they are used, straight from the skb.
#define SKB u64 skb
#define SKB_ARG skb
#define SKB64(off) LOAD64(skb + SPAN_START + (off))
#define SKB32(off) LOAD32(skb + SPAN_START + (off))
#define SKB16(off) (*(u16 *)(skb + SPAN_START + (off)))
#else
// One helper call copies the slice of the skb holding every member read (SPAN_START, SPAN_LEN).
static __always_inline u64 span_u64(const u8 *span, int off) {
    u64 value;
    __builtin_memcpy(&value, span + off, sizeof(value));
    return value;
}
static __always_inline u32 span_u32(const u8 *span, int off) {
    u32 value;
    __builtin_memcpy(&value, span + off, sizeof(value));
    return value;
}
static __always_inline u16 span_u16(const u8 *span, int off) {
    u16 value;
    __builtin_memcpy(&value, span + off, sizeof(value));
    return value;
}
#define SKB const u8 *span
#define SKB_ARG span
#define SKB64(off) span_u64(span, off)
#define SKB32(off) span_u32(span, off)
#define SKB16(off) span_u16(span, off)
#endif

// The namespace a drop happened in: the skb's device (every hook but locally generated output), else its socket,
// else its route's device (_skb_refdst, whose low bit is a "no reference" flag). The route's fields are read with
// helpers in both attach kinds: BTF types _skb_refdst as an integer.
static __always_inline u32 netns_lookup(SKB) {
    u64 net;
    u64 dev = SKB64(OFF_DEV);
    if (dev) {
        net = LOAD64(dev + NETDEV_NET);
        if (net)
            return LOAD32(net + NET_INUM);
    }
    u64 sk = SKB64(OFF_SK);
    if (sk) {
        net = LOAD64(sk + SOCK_NET);
        if (net)
            return LOAD32(net + NET_INUM);
    }
    u64 refdst = SKB64(OFF_DST) & ~1ULL;
    if (refdst) {
        u64 route_dev = probe64(refdst + DST_DEV);
        net = route_dev ? probe64(route_dev + NETDEV_NET) : 0;
        if (net) {
            u32 inum = 0;
            bpf_probe_read_kernel(&inum, sizeof(inum), (void *)(net + NET_INUM));
            return inum;
        }
    }
    return 0;
}

#ifdef TP_BTF
// Two dependent loads: no cache beats them.
#define NETNS_OF(gen) netns_lookup(SKB_ARG)
#else
// The last device's namespace, per CPU, valid for one generation (one drain interval): a flood through one device
// skips the helper reads of netns_lookup. A device moved to another namespace mid-flood is seen within a drain.
struct netns_cache {
    u64 dev;
    u32 inum;
    u32 generation;
};
BPF_PERCPU_ARRAY(netns_seen, struct netns_cache, 1);

static __always_inline u32 netns_cached(SKB, u32 gen) {
    u32 zero = 0;
    struct netns_cache *seen = netns_seen.lookup(&zero);
    u64 dev = SKB64(OFF_DEV);
    if (seen && dev && seen->dev == dev && seen->generation == gen)
        return seen->inum;
    u32 inum = netns_lookup(SKB_ARG);
    if (seen && dev) {
        seen->dev = dev;
        seen->inum = inum;
        seen->generation = gen;
    }
    return inum;
}
#define NETNS_OF(gen) netns_cached(SKB_ARG, gen)
#endif


// Adds one drop to this CPU's last-key cache of the current generation (``cached``, looked up by the caller), or,
// when the key differs, moves the cached run to the maps and starts a new one. The key arrives as words in
// registers: a run of one source compares them with the cached key and never builds the key on the stack.
static __always_inline void count_cached(struct drop_cache *cached, u64 w0, u64 w1, u64 w2, u64 w3, u64 bytes) {
    if (cached) {
        u64 *a = (u64 *)&cached->key;
        if (a[0] == w0 && a[1] == w1 && a[2] == w2 && a[3] == w3) {
            cached->packets += 1;
            cached->bytes += bytes;
            return;
        }
        if (cached->packets)
            count(&cached->key, cached->packets, cached->bytes);
        a[0] = w0;
        a[1] = w1;
        a[2] = w2;
        a[3] = w3;
        cached->packets = 1;
        cached->bytes = bytes;
        return;
    }
    struct drop_key key;
    u64 *k = (u64 *)&key;
    k[0] = w0;
    k[1] = w1;
    k[2] = w2;
    k[3] = w3;
    count(&key, 1, bytes);
}

// Loaded as tp_btf (BPF_PROG_TYPE_TRACING, attach type BPF_TRACE_RAW_TP, attach_btf_id btf_trace_kfree_skb) or
// as a raw tracepoint (BPF_PROG_TYPE_RAW_TRACEPOINT); both get the tracepoint's own arguments, without the cost of
// filling a perf trace record on every freed skb; their order comes from BTF (ARG_SKB, ARG_REASON).
// Not BCC's RAW_TRACEPOINT_PROBE: the installer loads and attaches it itself, after the map-in-map slots are filled.
// Common path of a flood from one source, as tp_btf: the reason test, loads from the skb, its device, its
// namespace and the packet, two inlined array lookups (generation, cache); no helper call.
int count_drops(u64 *ctx) {
    // most freed skbs are no netfilter drop: they leave before any other read
    if ((u32)ctx[ARG_REASON] != NETFILTER_DROP_REASON)
        return 0;
    u64 skb = ctx[ARG_SKB];
#ifndef TP_BTF
    u8 span[SPAN_LEN];
    if (bpf_probe_read_kernel(span, sizeof(span), (void *)(skb + SPAN_START)))
        __builtin_memset(span, 0, sizeof(span));  // still counted, as an unknown source of 0 bytes
#endif

    u32 policy = SKB32(OFF_MARK) & MARK_MASK;
    u32 zero = 0;
    u32 *gen = generation.lookup(&zero);
    u32 g = gen ? *gen : 0;  // read once: every cache below is of the same generation
    u32 index = g & 1;
    // the caches first: their lookups are calls to the compiler, which would spill the key words around them
    struct drop_cache *cached = gen ? cache.lookup(&index) : 0;
#ifdef FLOW_LOGS
    struct flow_cache *flow_cached = gen ? flow_cache.lookup(&index) : 0;
#endif
    u32 netns = NETNS_OF(g);

    u64 head = SKB64(OFF_HEAD);
    u16 proto = SKB16(OFF_PROTOCOL);  // __be16, unlike the tracepoint's copy
    u64 network = head + SKB16(OFF_NH);
    // nft counters count skb->len at every hook: from the network header at the IP hooks, from the MAC header
    // at netdev egress, so the figure equals the dropping rule's own counter wherever it dropped.
    u64 bytes = SKB32(OFF_LEN);

    // An 802.1Q/802.1ad tag still in the frame (not offloaded to skb->vlan_tci): the tags follow the MAC
    // addresses; the inner ethertype says what the packet is, and the IP header follows the last tag.
    if (proto == BE16(0x8100) || proto == BE16(0x88A8)) {
        u16 mac = SKB16(OFF_MAC);
        u16 tags[4];  // TCI, inner type, TCI, inner type
        if (mac != (u16)~0U && COPY(tags, head + mac + 14, sizeof(tags)) == 0) {
            proto = tags[1];
            network = head + mac + 18;
            if (proto == BE16(0x8100) || proto == BE16(0x88A8)) {
                proto = tags[3];
                network = head + mac + 22;
            }
        }
    }

#ifdef FLOW_LOGS
    u64 f[6];
    f[0] = KEY_WORD0(policy, netns);
    u8 family = flow_words(f, proto, network);
    if (count_flow(flow_cached, f, bytes) && cached) {
        // the previous packet here had this flow, so this drop key: it is the cached one
        cached->packets += 1;
        cached->bytes += bytes;
        return 0;
    }
    count_cached(cached, f[0], KEY_WORD1(family), f[2], f[3], bytes);
#else
    u8 family = FAMILY_OTHER;
    u64 addr[2] = {0, 0};  // the source address, in packet order
    if (proto == BE16(0x0800)) {
        family = COPY(addr, network + 12, 4) == 0 ? FAMILY_INET : FAMILY_OTHER;
    } else if (proto == BE16(0x86DD)) {
        family = COPY(addr, network + 8, 16) == 0 ? FAMILY_INET6 : FAMILY_OTHER;
    }
    if (family == FAMILY_OTHER)
        addr[0] = addr[1] = 0;
    count_cached(cached, KEY_WORD0(policy, netns), KEY_WORD1(family), addr[0], addr[1], bytes);
#endif
    return 0;
}
