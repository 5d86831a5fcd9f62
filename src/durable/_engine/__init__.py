"""The replay engine: the deterministic loop and the workflow instance. Pure: no store, no clock,
no network -- events in, commands and an outcome out."""
