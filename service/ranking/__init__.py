"""Candidate generation, fusion and the one reranker that applies diversity and business rules."""
