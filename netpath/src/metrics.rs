//! (being written) Prometheus exporter.
