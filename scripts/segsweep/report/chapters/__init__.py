"""The thesis's chapters, one module each: every `chapter(...)` returns a `Chapter` of the
document model, its tables and figures unnumbered (`segsweep.report.document`)."""
