"""Interfaces: the command line, the HTTP server and the transformers-compatible pipeline, thin over the layers below."""
