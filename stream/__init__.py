"""Real-time side of DiffLSRec: Kafka events in, recommendations out."""
