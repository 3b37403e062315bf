"""Edges to MLflow and the notification providers."""
