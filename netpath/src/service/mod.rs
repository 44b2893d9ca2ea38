//! What netpath serves: the control API (HTTP/JSON on a unix socket; server and client), the
//! Prometheus exporter, and the IPFIX exporter.
pub mod api;
pub mod ipfix;
pub mod metrics;
