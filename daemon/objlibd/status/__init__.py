"""What the daemon publishes (heartbeat, pause, pointer files) and the view `objlibd status` builds from it."""
