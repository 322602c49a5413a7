"""Services: plain Python between the HTTP layer and the adapters."""
