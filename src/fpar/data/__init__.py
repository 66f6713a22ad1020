"""Data: dataset layouts, sampling, transforms, datasets and the synthetic data set."""
