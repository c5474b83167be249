"""Training: the feature cache, and (with issue 4) the Lightning glue around the pure-torch student."""
