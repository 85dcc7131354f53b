"""The rule shapes of issue 12, as nft text and iptables commands, shared by the unit fixtures and the root tests.

Each shape drops UDP to its own port in the FORWARD hook of a routed node namespace; ``EXPECTED`` is the policy
label each must get. ``tests/collector/data/ruleset_shapes.json`` is this text loaded into a real nft and dumped.
"""

from __future__ import annotations

# nft: one inet table; {src4}/{src6} are the sending pod's addresses (verdict map keys).
NFT_SHAPES = """
table inet pw {{
  map denied4 {{ type ipv4_addr : verdict; elements = {{ {src4} : drop }} }}
  map denied6 {{ type ipv6_addr : verdict; elements = {{ {src6} : drop }} }}
  chain deny {{
    counter drop
  }}
  chain deny_named {{
    counter drop comment "ns-b/goto-deny"
  }}
  chain forward {{ type filter hook forward priority 0; policy accept;
    ct state invalid drop
    udp dport 7030 counter drop comment "drops without a mark"
    udp dport 7021 meta mark set 0x21 comment "setter-0x21"
    meta mark 0x21 counter drop comment "ns-a/later-rule"
    udp dport 7022 meta mark set 0x22 jump deny comment "ns-a/jump-deny"
    udp dport 7023 meta mark set 0x23 goto deny_named
    udp dport 7024 meta mark set 0x24 comment "ns-a/vmap"
    meta mark 0x24 ip saddr vmap {{ {src4} : drop }}
    meta mark 0x24 ip6 saddr vmap {{ {src6} : drop }}
    udp dport 7025 meta mark set 0x25 comment "ns-a/named-vmap"
    meta mark 0x25 ip saddr vmap @denied4
    meta mark 0x25 ip6 saddr vmap @denied6
    udp dport 7026 meta mark set meta mark | 0x2c counter drop comment "ns-a/or"
    udp dport 7027 meta mark set meta mark & 0xffffc000 | 0x2d counter drop comment "ns-a/and-or"
    udp dport 7029 meta mark set 0x30 accept comment "tagged but allowed"
    udp dport 7028 meta mark set 0x539
    udp dport 7028 counter drop
  }}
}}
"""

NFT_EXPECTED = {
    0x21: "ns-a/later-rule",  # the dropping rule's comment beats the setter's
    0x22: "ns-a/jump-deny",  # the drop in chain deny has no comment: the setter's
    0x23: "ns-b/goto-deny",
    0x24: "ns-a/vmap",
    0x25: "ns-a/named-vmap",
    0x2C: "ns-a/or",
    0x2D: "ns-a/and-or",
    0x539: "mark/0x539",  # set and dropped, no comment anywhere: the fallback
}
NFT_PORTS = {0x21: 7021, 0x22: 7022, 0x23: 7023, 0x24: 7024, 0x25: 7025, 0x2C: 7026, 0x2D: 7027, 0x539: 7028}

# iptables-nft (xt MARK target and comment match), across mangle and filter, a jump into a user chain too.
IPTABLES_NFT = [
    ["-t", "mangle", "-N", "PW-MARK"],
    ["-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--dport", "7031", "-j", "PW-MARK"],
    ["-t", "mangle", "-A", "PW-MARK", "-j", "MARK", "--set-xmark", "0x31/0x3fff"],
    ["-N", "PW-DENY"],
    [
        "-A",
        "FORWARD",
        "-m",
        "mark",
        "--mark",
        "0x31/0x3fff",
        "-m",
        "comment",
        "--comment",
        "ns-a/xt-mark",
        "-j",
        "DROP",
    ],
    ["-A", "FORWARD", "-p", "udp", "--dport", "7032", "-j", "MARK", "--set-xmark", "0x32/0x3fff"],
    ["-A", "FORWARD", "-m", "mark", "--mark", "0x32/0x3fff", "-j", "PW-DENY"],
    ["-A", "PW-DENY", "-m", "comment", "--comment", "ns-a/xt-jump", "-j", "DROP"],
    [
        "-A",
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        "kube-proxy firewall",
        "-m",
        "mark",
        "--mark",
        "0x8000/0x8000",
        "-j",
        "DROP",
    ],
]
IPTABLES_NFT_EXPECTED = {0x31: "ns-a/xt-mark", 0x32: "ns-a/xt-jump"}
IPTABLES_NFT_PORTS = {0x31: 7031, 0x32: 7032}

# iptables-legacy: the same kind of rules, plus --or-mark and REJECT.
IPTABLES_LEGACY = [
    ["-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--dport", "7033", "-j", "MARK", "--set-xmark", "0x33/0x3fff"],
    ["-A", "FORWARD", "-m", "mark", "--mark", "0x33/0x3fff", "-m", "comment", "--comment", "ns-a/legacy", "-j", "DROP"],
    ["-A", "FORWARD", "-p", "udp", "--dport", "7034", "-j", "MARK", "--or-mark", "0x34"],
    ["-A", "FORWARD", "-p", "udp", "--dport", "7034", "-m", "comment", "--comment", "ns-a/legacy-or", "-j", "DROP"],
]
IPTABLES_LEGACY_EXPECTED = {0x33: "ns-a/legacy", 0x34: "ns-a/legacy-or"}
IPTABLES_LEGACY_PORTS = {0x33: 7033, 0x34: 7034}
