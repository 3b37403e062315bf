"""The application: a window's extraction, computation, diagnosis and judgement over the stores.

No SQL and no Airflow here: the warehouse package reads and writes, the airflow package schedules.
"""
