"""HTTP route handlers; each module is one area of the API."""
