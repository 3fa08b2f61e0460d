"""Robot-facing code: the robot interface, the ZMQ bridge and its backends."""
