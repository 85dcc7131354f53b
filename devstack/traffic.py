"""Bounded traffic senders, as Python source to run with ``ip netns exec NS python3 -c SOURCE ARGS``.

Used by the collector's root tests and its benchmark: each sends a fixed count, only to the address it is given
(a namespace or veth the caller made).
"""

# Sends COUNT UDP datagrams of SIZE payload bytes to HOST:PORT (run inside a namespace).
UDP_SENDER = """
import socket, sys
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(b"x" * size, (host, port))
"""

# Sends one UDP datagram from each of COUNT spoofed IPv4 sources BASE+i to HOST:PORT (IP_HDRINCL raw socket).
SPOOF_SENDER = """
import ipaddress, socket, struct, sys
dst, port, base, count, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
payload = b"y" * 18
base_int = int(ipaddress.IPv4Address(base))
for _ in range(repeat):
    for i in range(count):
        src = socket.inet_aton(str(ipaddress.IPv4Address(base_int + i)))
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, socket.inet_aton(dst))
        s.sendto(ip + udp, (dst, 0))
"""

# Sends COUNT ICMP (ICMPv6) echo requests with SIZE payload bytes to HOST (raw socket; the kernel drops replies).
ICMP_SENDER = """
import socket, struct, sys
host, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v6 = ":" in host
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
for seq in range(count):
    body = struct.pack("!HH", 0x7077, seq) + b"p" * size
    head = struct.pack("!BBH", 128 if v6 else 8, 0, 0)
    total = 0
    if not v6:  # the kernel fills in the ICMPv6 checksum, not the ICMP one
        data = head + body + (b"\\0" if len(body) % 2 else b"")
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        total = (total >> 16) + (total & 0xFFFF)
        total = ~(total + (total >> 16)) & 0xFFFF
    s.sendto(struct.pack("!BBH", 128 if v6 else 8, 0, total) + body, (host, 0))
"""

# COUNT TCP connection attempts to HOST:PORT, each given up after TIMEOUT seconds (a dropped SYN, not retried
# within it); prints the source port of each attempt, one a line.
TCP_SYN_SENDER = """
import socket, sys, time
host, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for _ in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    print(s.getsockname()[1], flush=True)
    time.sleep(timeout)  # the socket stays open: its one SYN is not retransmitted within TIMEOUT (RTO 1 s)
    s.close()
"""
