"""Inference runtime: text encoding, ONNX sessions, decoding (no PyTorch here)."""
