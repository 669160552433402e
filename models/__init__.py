"""models package of hwgen."""
