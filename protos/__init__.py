"""The gRPC contract (protos/siamatch/v1/*.proto) and the Python stubs generated from it.

The stubs are generated at install time (setup.py, `make install`) and never committed;
`python -m protos.generate` regenerates them, and tests/test_protos.py fails when they are stale.
"""
