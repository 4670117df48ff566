"""Personalization: profiles from events, popularity, co-occurrence and recommendations."""
