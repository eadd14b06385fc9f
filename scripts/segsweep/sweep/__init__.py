"""The sweep: its grammar and run ids (`grammar`, read when the workflow plans), the choice of
final models (`final`), the analysis tables (`analysis`) and their statistics (`stats`)."""
