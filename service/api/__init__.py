"""HTTP routers. Each route parses, delegates to the dispatcher or the fleet, and formats: nothing more."""
