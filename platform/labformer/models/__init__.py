"""Backbones, one folder per family; `registry` imports a family when it needs one of its entries."""
