"""``modelwatch db migrate``: what a deployment creates once, before its workers start.

Every monitor's warehouse gets its results schema and modelwatch's tables (the same idempotent, locked
creation that tasks do on first use: :mod:`modelwatch.warehouse.schema`), and a database MLflow tracking
URI (``postgresql+psycopg://...``, ``sqlite:///...``) gets MLflow's own schema: MLflow migrates it on first
use, and several workers doing that at once race. A tracking server (http/https) migrates its own store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from modelwatch.core.config import MonitorConfig, mask_credentials


def migrate(monitors: Sequence[MonitorConfig], *, mlflow: bool = True) -> Iterator[str]:
    """Create what the monitors need, each warehouse (URL, results schema) and tracking store once.

    Args:
        monitors: The deployment's monitors.
        mlflow: Also create the schema of a database tracking URI.

    Yields:
        One line per warehouse or tracking store done (credentials masked).
    """
    from modelwatch.airflow.connections import warehouse_url
    from modelwatch.warehouse.engine import make_engine
    from modelwatch.warehouse.schema import create_tables

    warehouses: dict[tuple[str, str | None], list[str]] = {}
    for monitor in monitors:
        warehouses.setdefault((warehouse_url(monitor), monitor.warehouse.results_schema), []).append(monitor.name)
    for (url, schema), names in warehouses.items():
        tables = create_tables(make_engine(url, results_schema=schema))
        where = f"{mask_credentials(url)}" + (f" schema {schema}" if schema else "")
        yield f"warehouse {where} ({', '.join(names)}): {len(tables)} tables ready"
    if not mlflow:
        return
    from modelwatch.integrations.tracking import prepare_store, tracking_uri

    for uri in dict.fromkeys(tracking_uri(monitor) for monitor in monitors):
        if prepare_store(uri):
            yield f"mlflow {mask_credentials(uri)}: schema ready"
        else:
            yield f"mlflow {mask_credentials(uri)}: a tracking server (migrates its own store)"
