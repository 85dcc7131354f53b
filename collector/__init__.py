"""Node agent: counts netfilter drops with eBPF and exports them as Prometheus gauges."""
