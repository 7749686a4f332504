"""The fallback engine: plain dataclasses in, a result or one error out. No Django here."""
