"""Training one run: the loop (`loop`), its resume state (`state`), the record of a failed run
(`failure`) and the job the workflow starts (`job`: device lease, attempts, provenance)."""
