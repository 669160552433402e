"""optical4f package of hwgen."""
