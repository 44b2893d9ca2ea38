//! The per-interface counters: one entry per (interface, direction) with a packet and byte count
//! per traffic class.

use crate::class;

/// Direction of a frame relative to the interface it was seen on.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;
pub const DIRECTIONS: [&str; 2] = ["ingress", "egress"];

pub const IFACE_TABLE_SIZE: u32 = 16_384;

/// Packets and bytes. Bytes are the L2 frame as on the wire: Ethernet header and every VLAN tag,
/// no FCS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Key of the per-interface counters: one entry per (interface, direction) holds every class, so
/// the datapath does one hash lookup per frame for them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
}

impl IfaceKey {
    pub const fn new(ifindex: u32, direction: u8) -> Self {
        Self {
            ifindex,
            direction,
            _pad: [0; 3],
        }
    }

    /// The same key as [`IfaceKey::new`], built for the datapath as two u32 stores: written
    /// field by field, `_pad` (and, for ingress, the zero `direction`) becomes a `memset` call
    /// into the BPF backend's byte loop (see [`Words`]).
    #[inline(always)]
    pub fn new_words(ifindex: u32, direction: u8) -> Self {
        let mut k = core::mem::MaybeUninit::<IfaceKey>::uninit();
        let p = k.as_mut_ptr() as *mut u32;
        // SAFETY: IfaceKey is two u32 words (repr(C), align 4, size 8): `ifindex`, then
        // `direction` and the three `_pad` bytes, in memory order. Both are written, so the value
        // is initialised.
        unsafe {
            p.write_volatile(ifindex);
            p.add(1).write_volatile(u32::from_ne_bytes([direction, 0, 0, 0]));
            k.assume_init()
        }
    }
}

/// Per-class counters of one (interface, direction), indexed by [`class`] id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub class: [Counter; class::COUNT],
}

const _: () = assert!(size_of::<IfaceKey>() == 8 && align_of::<IfaceKey>() == 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, integers and byte arrays only, explicit padding fields so that
    // every byte is initialised.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceKey {}
    unsafe impl aya::Pod for super::IfaceCounters {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<IfaceKey>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<IfaceCounters>(), 16 * class::COUNT);
    }

    #[test]
    fn word_built_key_equals_the_plain_one() {
        for (i, d) in [(1, DIR_INGRESS), (0xdead_beef, DIR_EGRESS)] {
            assert_eq!(IfaceKey::new_words(i, d), IfaceKey::new(i, d));
        }
    }
}
