"""The demo: seeded warehouses, the in-process Airflow run and its summary."""
