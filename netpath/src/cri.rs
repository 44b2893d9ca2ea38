//! (being written) CRI pod lookup.
