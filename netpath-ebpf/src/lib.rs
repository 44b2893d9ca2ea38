//! What both eBPF objects share: the production datapath (`src/main.rs`, bin `netpath`) and the
//! benchmark programs (`src/bench.rs`, bin `netpath-bench`).
#![no_std]

pub mod cursor;
