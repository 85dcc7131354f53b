"""The alert evaluation engine: log stores, one alert execution, alert instances, the scheduler.

``run`` (execute.py) is a pure function of (spec, window, store); ``track`` (instances.py) turns its findings
into events against the firing instances; ``Scheduler`` (scheduler.py) runs every alert every period with
leases so several evaluator processes share the work exactly once.
"""
