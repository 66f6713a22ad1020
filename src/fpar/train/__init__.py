"""Training: staged recipes into run dirs (`run.train`), the loop (`loop`), losses, stages."""
