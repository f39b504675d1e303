"""Admin surfaces behind the bearer token: chaos scenarios and debug views."""
