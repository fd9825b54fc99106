"""Tracking: run keys and MLflow runs."""
