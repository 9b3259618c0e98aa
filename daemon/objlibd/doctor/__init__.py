"""`objlibd doctor`: checks of the config, the drive, the state, the store and the service."""
