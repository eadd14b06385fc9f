"""Preprocessing: N4 bias correction (`n4`), the crop around the joint centre and slice
harmonisation (`crop`), the patient-level split (`split`), intensity normalisation with
training statistics (`normalise`, also used by every inference path) and packing into HDF5
(`pack`)."""
