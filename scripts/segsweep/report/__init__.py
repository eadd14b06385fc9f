"""The thesis: the figures of the sweep (`figures`) and the document, HTML and PDF (`thesis`)."""
