"""segsweep: raw 3D medical images to a thesis chapter, through a Snakemake hyperparameter sweep."""

__version__ = "0.1.0"
