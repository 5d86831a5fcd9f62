"""What workflow and step code touches: ``@workflow``, ``@step``, durable sleep/now/random/uuid4,
hooks and webhooks, ``get_writable`` and metadata. Typed against the small protocols of
:mod:`.context`, never against the engine or the runtime that implement them."""
