"""NeuMeta weight service: generates ResNet20 weights of any width from an implicit hypernetwork."""

__version__ = "0.1.0"
