//! What both eBPF objects share: the production datapath (`src/main.rs`, bin `netpath`) and the
//! benchmark programs (`src/bench.rs`, bin `netpath-bench`).
#![no_std]

pub mod cursor;

// Both objects link this crate, so one panic handler and one license section serve both (GPL: the
// datapath calls GPL-only helpers such as bpf_redirect_peer and bpf_perf_event_output).
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
