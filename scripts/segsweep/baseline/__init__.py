"""A fair baseline: the prepared cohort for nnU-Net, and external predictions scored as ours."""
