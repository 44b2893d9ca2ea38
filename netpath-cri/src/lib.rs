//! A client of the Kubernetes Container Runtime Interface (CRI v1) over a unix socket, for
//! containerd and CRI-O: the daemon names pods with it, the lab and the tests create them.
pub mod client;
pub mod proto;

pub use client::{
    candidates, paths, CriClient, CriError, RuntimeVersion, CALL_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_SOCKETS,
    LIFECYCLE_TIMEOUT,
};
/// gRPC status codes, as [`CriError::Call`] carries them.
pub use tonic::Code;
