"""siamese-matching: face verification (selfie vs ID document) as a batched gRPC service."""

__version__ = "0.1.0"
