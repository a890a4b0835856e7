"""Provider adapters: one per provider over httpx, one interface for all."""
