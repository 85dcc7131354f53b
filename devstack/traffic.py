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
