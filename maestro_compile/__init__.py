"""maestro_compile: Maestro study specifications compiled ahead of time into scheduler-native DAGs."""
__version__ = "0.1.0"
