"""Pure market logic: no trio, no I/O. Everything here is a function of its inputs."""
