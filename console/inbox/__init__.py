"""The staff inbox in the console: views and forms (docs/handoff.md, "The staff inbox")."""
