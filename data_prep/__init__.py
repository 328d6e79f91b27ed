"""Turns a landmark dataset (CelebA, MTFL, Sun et al.'s lists, or the built-in synthetic CelebA) into HDF5 and LMDB for both levels."""
