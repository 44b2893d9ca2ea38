//! The one bounds-checked cursor over packet memory. Every read the shared parser makes comes
//! through [`Packet::bytes`]; the two comparisons in it are what the verifier needs to accept a
//! variable-offset packet access: the offset has a constant upper bound, and the access ends before
//! `data_end`.

use netpath_common::parse::{Frame, Header, CURSOR_WINDOW};

pub struct Packet {
    pub data: usize,
    pub data_end: usize,
    /// Length of the whole frame: for TC this is `skb->len`, which exceeds the linear part when
    /// the skb is paged.
    pub len: usize,
}

impl Frame for Packet {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > CURSOR_WINDOW {
            return None;
        }
        // Without this barrier LLVM folds constants of neighbouring reads into the offset
        // (computing `data + (off - 4) + 24`), and the verifier then sees a possibly negative
        // scalar added to the packet pointer and rejects the program. black_box makes the checked
        // value the one that is added.
        let off = core::hint::black_box(off);
        let p = self.data + off;
        if p + N > self.data_end {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the packet, checked above; [u8; N] has alignment 1.
        Some(unsafe { core::ptr::read(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn header<H: Header>(&self, off: usize) -> Option<H> {
        // The same two checks as `bytes`, for a network-types header layout.
        if off > CURSOR_WINDOW {
            return None;
        }
        let off = core::hint::black_box(off);
        let p = self.data + off;
        if p + size_of::<H>() > self.data_end {
            return None;
        }
        // SAFETY: [p, p + size_of::<H>()) lies inside the packet, checked above; the read is
        // unaligned, and any bytes are a valid H (the `Header` contract).
        Some(unsafe { core::ptr::read_unaligned(p as *const H) })
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }
}
