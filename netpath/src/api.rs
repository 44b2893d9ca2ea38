//! (being written) control API over a unix socket.
