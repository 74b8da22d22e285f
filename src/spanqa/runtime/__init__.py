"""The model runtime: devices, loading models and tokenizers, and the backends that run them (PyTorch, ONNX Runtime)."""
