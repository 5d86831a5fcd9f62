"""The worker: ``Runtime(Client)`` and its collaborators -- dispatch, invocations with the sticky
cache, step slots and execution, stream writers, liveness."""
