"""Vision encoders: one ABC and one adapter per weights source."""
