"""Results: the run folder and tidy table, their columns, provenance, the control plane's events, atomic files."""
