"""Reward-model training. The modules config, data, losses, metrics, train and scoring are plain
Python (no Django); torch and transformers are imported only inside this package."""
