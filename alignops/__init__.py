"""alignops: train and align a GPT-style model the way ChatGPT was built.

The library holds everything that is neither a model (see `models/`) nor a UI: typed configs, data, stages,
tracking. Importing it does no work; run `alignops --help` for the command line.
"""

__version__ = "0.1.0"
