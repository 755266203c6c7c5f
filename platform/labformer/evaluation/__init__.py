"""Evaluation of learnt embeddings: kNN, linear probe, spread, N-way K-shot episodes."""
