"""What outside callers use: the :class:`Client`, the :class:`Run` handle, the one projection of
runs, steps and hooks, and stream readers. Executes nothing."""
