"""Reliability helpers: a core query service with a bounded queue (what the resolver node's
worker does, without ROS), a CUDA out-of-memory fallback around the resolver, and RSS
measurement for floods and soaks. No ROS import here."""
