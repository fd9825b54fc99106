"""Small shared helpers: logging, errors, atomic file writes and hashing."""
