"""The pure core: configuration, window and status types, statistics, metrics, drift, segments,
root cause, thresholds, the alert state machine and its routing. Imports no I/O framework.
"""
