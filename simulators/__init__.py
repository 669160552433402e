"""simulators package of hwgen."""
