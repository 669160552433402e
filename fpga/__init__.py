"""fpga package of hwgen."""
