"""Files every stage shares: images (`images`), the HDF5 split format (`splits`) and JSON/CSV
records (`records`). Depends on nothing of the stages."""
