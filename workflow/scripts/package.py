"""Rule package: a final model as a self-contained model package (segsweep.deploy.package)."""

import torch

from segsweep.deploy.package import Records, build_package
from segsweep.devices import choose_device
from segsweep.io.records import read_json
from segsweep.logs import logged

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    subjects, given, params = snakemake.params.subjects, snakemake.input, snakemake.params
    manifest = build_package(
        snakemake.output[0],
        snakemake.wildcards.run,
        dict(zip(params.runs, zip(given.selections, given.indices, strict=True), strict=True)),
        list(given.val_tables),
        params.settings,
        read_json(given.stats),
        read_json(given.plan) if given.plan else None,
        list(given.datasets),
        Records(
            dict(zip(subjects, given.crop_records, strict=True)),
            dict(zip(subjects, given.ingest_records, strict=True)),
        ),
        read_json(given.provenance).get("config_hash"),
        choose_device(),
    )
    calibration = manifest["qc"]["calibration"]
    print(f"QC calibrated on {calibration['patients']} validation patients: {calibration}")
