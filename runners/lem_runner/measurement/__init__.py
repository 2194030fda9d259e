"""What turns raw timestamps and counts into reported figures: latency statistics, FLOPs, the environment record."""
