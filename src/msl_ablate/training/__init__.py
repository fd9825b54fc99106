"""Training: the optimization strategy per stage and the LightningModule."""
