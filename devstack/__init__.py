"""Real services started locally, shared by the demo, the tests and the benchmarks.

Throwaway PostgreSQL, Prometheus, Alertmanager and webhook servers (``devstack.services``) and network namespaces
joined by veths (``devstack.netns``). They are part of the distribution so that ``demo/`` and ``bench/`` never
import the test tree; the pytest fixtures in ``tests/`` wrap them.
"""
