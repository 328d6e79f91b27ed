"""Measuring trained models: the figures of a run (`plots`: per-point errors, histograms, CED
curves, the worst images) and forward speed in every backend side by side (`timing`).

May import: every other landmarks package.
"""
