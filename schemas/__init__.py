"""Pure configuration and record models for safepref (pydantic v2, no I/O)."""
