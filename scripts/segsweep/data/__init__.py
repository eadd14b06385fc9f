"""Data: the synthetic knee cohort (`cohort`), the bring-your-own manifest read when the
workflow plans (`manifest`), and the ingest of each subject: validation, canonical orientation,
geometry records and the cohort table (`ingest`)."""
