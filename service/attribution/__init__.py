"""Attribution: which served response (request, query, surface, position, variant) led to an event."""
