"""A/B experiments: configuration, sticky assignment, serving plans and reports."""
