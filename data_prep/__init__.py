"""Turns a landmark dataset (CelebA, MTFL, Sun et al.'s lists, or the built-in synthetic CelebA)
into HDF5 and LMDB for both levels, and makes stress copies of a split.

The floor above the landmarks library: it may import landmarks (the conventions above all),
never workflow or tools. The dataset record is `dataset`, the table of readers `readers`.
"""
