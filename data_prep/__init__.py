"""Turns CelebA (or the built-in synthetic CelebA) into HDF5 and LMDB for both levels."""
