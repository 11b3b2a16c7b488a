"""Coalition's edge: HTTP app, settings, database bootstrapping, CLI."""
