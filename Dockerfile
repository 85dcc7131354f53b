# One image for both components: policywatch-collector (run as root with a few capabilities, see the chart's
# DaemonSet) and policywatch-evaluator (runs as the unprivileged user 10001, the image default).
# Build from the repository root:  docker build -t policywatch:0.1.0 .
FROM debian:12-slim

# python3-bpfcc: BCC is not usable from PyPI, so the venv sees Debian's through --system-site-packages.
# nftables/python3-nftables: the collector reads the rulesets; iproute2 for `ip netns`. Kernel headers are
# not in the image: BCC compiles against the node's, mounted from /lib/modules and /usr/src.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip python3-bpfcc nftables python3-nftables iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/policywatch
COPY pyproject.toml README.md ./
COPY api ./api
COPY bpf ./bpf
COPY collector ./collector
COPY evaluator ./evaluator
COPY migrations ./migrations
COPY alembic.ini ./

RUN python3 -m venv --system-site-packages /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && /opt/venv/bin/python -c "import bcc, collector, evaluator, api" \
 && groupadd --system --gid 10001 policywatch \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/policywatch --create-home policywatch

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080 9081
CMD ["policywatch-evaluator", "--host", "0.0.0.0"]
