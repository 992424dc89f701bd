"""Benchmarks run from a checkout (``python -m benchmarks.<name>``); they are not installed with the service.

- ``export``: bytes, generation time, onnxruntime speed and accuracy per served dtype
- ``calibration``: int8 calibration choices compared
- ``serve_load``: cold ``/model`` latency, then cache-hit latency and throughput under load
- ``revalidate``: what a device's ``If-None-Match`` costs through the shipped nginx

The benchmarks behind ``neumeta bench`` ship with the code they measure: ``kernels/bench.py``
(``neumeta bench kernel``) and ``service/training/bench_train.py`` (``neumeta bench train``).
"""
