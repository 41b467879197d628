"""Training: models, losses, the training loop, evaluation, model exports and rendering."""
