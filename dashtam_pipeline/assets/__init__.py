"""Asset definitions: generated ingestion assets (``factory``) and marts (``marts``)."""
