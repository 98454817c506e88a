"""week11_scale: the same training code on one CPU process or many GPUs (work in progress)."""
