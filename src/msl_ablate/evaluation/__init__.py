"""Evaluation: batched generation and scoring."""
