"""Config: schemas, composition with clear errors, and cross-group checks."""
