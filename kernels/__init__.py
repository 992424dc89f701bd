"""Evaluation of the hypernetwork over a coordinate table: PyTorch reference and Triton kernel."""
