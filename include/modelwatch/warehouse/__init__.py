"""Warehouse edge: engines, window statistics computed in SQL, and the results tables."""
