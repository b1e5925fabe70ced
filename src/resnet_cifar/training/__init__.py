"""What one training run does: the LightningModule, the protocol's callbacks, checkpoints, the metric."""
