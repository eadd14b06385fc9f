"""Evaluation: predictions (`predict`), confusion counts on the model's device (`counts`),
checkpoint selection on validation (`select`), per-slice and per-patient tables (`tables`),
surface distances (`distances`), exported label maps and native-space scores (`export`),
outline figures (`outlines`) and predictions for unlabelled subjects (`unlabelled`)."""
