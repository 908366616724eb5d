"""Data side: raw logs -> canonical events -> sessions -> splits -> feature workflow -> sequences."""
