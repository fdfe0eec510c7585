"""Bit-exact integer models of the contracts' math, the references of differential tests."""
