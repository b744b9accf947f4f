"""One file in a worker: pipeline, steps, geometry, header values, time, publishing."""
