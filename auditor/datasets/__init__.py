"""Dataset references: resolve, read, fingerprint."""
