"""What Airflow gains: the IOC page (an Airflow 3 plugin) and the trigger that starts ingest when a citizen source has news."""
