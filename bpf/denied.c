// Counts netfilter drops per {policy id, source address}. Loaded by BCC from this file (collector/bpf_loader.py).
//
// Every kernel-version-dependent number arrives as a -D define computed at load time:
//   NETFILTER_DROP_REASON   enum skb_drop_reason value, from the tracepoint's format file (or BTF)
//   SPAN_START, SPAN_LEN    one contiguous slice of struct sk_buff holding len, mark, head, data,
//                           network_header and protocol (offsets from /sys/kernel/btf/vmlinux), read with one helper call
//   OFF_LEN, OFF_MARK, OFF_HEAD, OFF_DATA, OFF_NH, OFF_PROTOCOL   those members' offsets inside the slice
//   MARK_MASK               bits of skb->mark that carry the policy id
//   MAP_SIZE, OVERFLOW_SIZE bounds of the counting maps
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

// The tracepoint's generated argument struct names this enum; the headers BCC compiles against may lack it
// or list other values. Only its 4-byte size matters: the value is compared with NETFILTER_DROP_REASON.
enum skb_drop_reason { SKB_DROP_REASON_FROM_FORMAT_FILE__ = 0 };

struct drop_key {
    u32 policy;
    u8 family;
    u8 pad[3];
    u8 addr[16];
};

struct drop_value {
    u64 packets;
    u64 bytes;
};

BPF_TABLE("percpu_hash", struct drop_key, struct drop_value, drops_a, MAP_SIZE);
BPF_TABLE("percpu_hash", struct drop_key, struct drop_value, drops_b, MAP_SIZE);
BPF_ARRAY_OF_MAPS(drops_slot, "drops_a", 1);

// Per policy: drops that found the counting map full.
BPF_TABLE("percpu_hash", u32, struct drop_value, overflow_a, OVERFLOW_SIZE);
BPF_TABLE("percpu_hash", u32, struct drop_value, overflow_b, OVERFLOW_SIZE);
BPF_ARRAY_OF_MAPS(overflow_slot, "overflow_a", 1);

// Last resort when the overflow map is full too: one monotonic per-CPU counter, never reset.
BPF_PERCPU_ARRAY(unplaced, struct drop_value, 1);

static __always_inline int count_in(void *map, void *key, u64 bytes) {
    struct drop_value *value = bpf_map_lookup_elem(map, key);
    if (value) {
        value->packets += 1;
        value->bytes += bytes;
        return 0;
    }
    struct drop_value first = {.packets = 1, .bytes = bytes};
    int err = bpf_map_update_elem(map, key, &first, BPF_NOEXIST);
    if (err != -EEXIST)
        return err;
    // Another CPU inserted the key first; this CPU's slot of a per-CPU entry starts at zero.
    value = bpf_map_lookup_elem(map, key);
    if (!value)
        return -ENOENT;
    value->packets += 1;
    value->bytes += bytes;
    return 0;
}

TRACEPOINT_PROBE(skb, kfree_skb) {
    if (args->reason != NETFILTER_DROP_REASON)
        return 0;

    u8 span[SPAN_LEN];
    if (bpf_probe_read_kernel(span, sizeof(span), (u8 *)args->skbaddr + SPAN_START))
        __builtin_memset(span, 0, sizeof(span));  // still counted, as an unknown source of 0 bytes

    u32 len, mark;
    u64 head, data;
    u16 nh, proto;
    __builtin_memcpy(&len, span + OFF_LEN, sizeof(len));
    __builtin_memcpy(&mark, span + OFF_MARK, sizeof(mark));
    __builtin_memcpy(&head, span + OFF_HEAD, sizeof(head));
    __builtin_memcpy(&data, span + OFF_DATA, sizeof(data));
    __builtin_memcpy(&nh, span + OFF_NH, sizeof(nh));
    __builtin_memcpy(&proto, span + OFF_PROTOCOL, sizeof(proto));  // __be16, unlike the tracepoint's copy

    struct drop_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.policy = mark & MARK_MASK;

    u64 network = head + nh;
    // netfilter counts skb->len with data at the network header; count from the network header whatever
    // data points at, so the figure equals the IP packet's length as the dropping rule's counter sees it.
    u64 bytes = (u64)len + data - network;

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

    u32 slot = 0;
    void *drops = drops_slot.lookup(&slot);
    if (drops && count_in(drops, &key, bytes) == 0)
        return 0;

    u32 policy = key.policy;
    void *overflow = overflow_slot.lookup(&slot);
    if (overflow && count_in(overflow, &policy, bytes) == 0)
        return 0;

    struct drop_value *last = unplaced.lookup(&slot);
    if (last) {
        last->packets += 1;
        last->bytes += bytes;
    }
    return 0;
}
