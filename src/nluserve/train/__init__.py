"""Training (needs the ``train`` extra: PyTorch). Serving code never imports this package."""
