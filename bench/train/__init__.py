"""Training: the one trainer and its hooks, the losses, importance and saliency scores, the
models, metrics and their per-epoch log, precision, progress and multiply-accumulate counts."""
