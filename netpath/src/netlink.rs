//! (being written) rtnetlink: links, addresses, notifications, namespace ids.
