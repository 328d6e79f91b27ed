"""The top of the house below the tools: a run folder's orchestration. A run's settings, checked
before anything is written (`settings`); the data it trains on, built through data prep's own
command line (`data`); the stages level1, crops, level2 and demo (`stages`); what each stage
was made from, so a rerun never mixes old and new (`provenance`); which models the tools run,
a run's, given files or the shipped ones (`runs`); the run's report.md (`report`); and the
GPU kit (`gpu_kit`).

May import: data_prep and landmarks. Only tools/ (and tests) import it.
"""
