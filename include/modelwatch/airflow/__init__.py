"""The only importer of Airflow: the DAG factory, the task adapters, the in-process runner, the plugin."""
