"""Batching RQ workers: claim queued pairs, run them through the model together, publish."""
