"""The benchmark harness: raw Kafka passthrough vs each stage alone vs the whole pipeline."""
