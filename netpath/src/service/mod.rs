//! What netpath serves: the control API (HTTP/JSON on a unix socket; server and client) and the
//! Prometheus exporter.
pub mod api;
pub mod metrics;
