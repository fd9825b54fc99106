"""Results: the store rebuilt from MLflow, and tables built from the store."""
