"""Benchmarks of Vow (scripts, not tests: nothing here is asserted). See bench/quick.py."""
