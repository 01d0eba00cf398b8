"""Local development stack: the sample site and the process supervisor behind ``askbase dev``."""
