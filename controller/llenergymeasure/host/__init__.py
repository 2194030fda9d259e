"""Facts about the machine the controller runs on and what it holds there: GPUs and backend libraries it sees
(inventory), the Docker engine it reaches (docker_engine), per-GPU locks between lem processes (gpu_lock), and lem's
cache folder (cache)."""
