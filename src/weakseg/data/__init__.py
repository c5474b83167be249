"""Datasets shared by training, evaluation and prediction, and the synthetic demo set."""
