//! The one bounds-checked cursor over packet memory. Every read the shared parser makes comes
//! through [`read`]; the two comparisons in it are what the verifier needs to accept a
//! variable-offset packet access: the offset has a constant upper bound, and the access ends before
//! `data_end`. [`Packet`] reads a frame that is all linear (XDP); [`Skb`] reads an skb, pulling its
//! headers into the linear area the first time a read runs into its paged part (TC); [`Copied`]
//! reads the headers the drop tracer copied out of a dropped skb into a map value.

use aya_ebpf::programs::TcContext;
use netpath_common::parse::{Frame, Header, CURSOR_WINDOW};

/// The `T` (a byte array, a u64 or a network-types header: read unaligned, any bytes valid) at `off`, when `data + off .. + size_of::<T>()` lies before `data_end`.
#[inline(always)]
fn read<T: Copy>(data: usize, data_end: usize, off: usize) -> Option<T> {
    if off > CURSOR_WINDOW {
        return None;
    }
    // Without this barrier LLVM folds constants of neighbouring reads into the offset (computing
    // `data + (off - 4) + 24`), and the verifier then sees a possibly negative scalar added to the
    // packet pointer and rejects the program. black_box makes the checked value the one that is
    // added.
    let off = core::hint::black_box(off);
    let p = data + off;
    if p + size_of::<T>() > data_end {
        return None;
    }
    // SAFETY: [p, p + size_of::<T>()) lies inside the packet, checked above; the read is
    // unaligned, and every caller's T accepts any bytes ([u8; N], or `Header`'s contract).
    Some(unsafe { core::ptr::read_unaligned(p as *const T) })
}

/// A frame that is all linear (XDP).
pub struct Packet {
    pub data: usize,
    pub data_end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn linear(data: usize, data_end: usize) -> Packet {
        Packet { data, data_end }
    }
}

impl Packet {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        read(self.data, self.data_end, off)
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.data_end - self.data
    }
}

/// [`Frame`] for a cursor type with `read::<T>(off)` (its one bounds-checked read) and
/// `frame_len()`: every read of the parser goes through `read`.
macro_rules! frame_by_read {
    ([$($generics:tt)*] $t:ty) => {
        impl<$($generics)*> Frame for $t {
            #[inline(always)]
            fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
                self.read(off)
            }

            #[inline(always)]
            fn ne_u64_at(&self, off: usize) -> Option<u64> {
                self.read(off)
            }

            #[inline(always)]
            fn header<H: Header>(&self, off: usize) -> Option<H> {
                self.read(off)
            }

            #[inline(always)]
            fn len(&self) -> usize {
                self.frame_len()
            }
        }
    };
}

frame_by_read!([] Packet);

/// An skb seen by TC: `skb->len` bytes, of which only the head is linear (directly readable).
pub struct Skb<'a> {
    ctx: &'a TcContext,
    /// Set to 1 when pulling the headers failed. It points into map memory, whose contents the
    /// verifier does not track: a flag on the stack would split the parser's states in two.
    pull_failed: *mut u8,
}

/// How much of a paged skb is pulled into the linear area: as far as the parser reads.
const PULL_LEN: usize = CURSOR_WINDOW;

impl<'a> Skb<'a> {
    /// # Safety
    /// `pull_failed` must point at a byte that outlives the frame (a field of a map value); it is
    /// cleared here, and written only by this frame's reads.
    #[inline(always)]
    pub unsafe fn new(ctx: &'a TcContext, pull_failed: *mut u8) -> Skb<'a> {
        // SAFETY: the caller's contract.
        unsafe { pull_failed.write_volatile(0) };
        Skb { ctx, pull_failed }
    }

    /// Whether a pull failed since [`Skb::new`].
    #[inline(always)]
    pub fn pull_failed(&self) -> bool {
        // SAFETY: see `new`.
        unsafe { self.pull_failed.read_volatile() != 0 }
    }

    /// `skb->data` and `skb->data_end`, loaded now. The packet pointers are loaded from the
    /// context for every read, never kept: a pull invalidates every packet pointer the verifier
    /// knows of, and the parser holds only offsets.
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        // black_box: without it LLVM keeps `&skb->data_end` (the context pointer plus 80) in a
        // register across reads, and the verifier refuses a load through a modified context
        // pointer.
        let skb = core::hint::black_box(self.ctx.skb.skb);
        // SAFETY: the __sk_buff the kernel passed to this program.
        unsafe { ((*skb).data as usize, (*skb).data_end as usize) }
    }

    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        let (data, data_end) = self.bounds();
        if let Some(v) = read(data, data_end, off) {
            return Some(v);
        }
        // `skb->len` loaded here, not kept: a length the comparison bounded on this path only
        // would make the verifier walk the rest of the parse once more from every read.
        let len = self.len();
        if off + size_of::<T>() > len || off > CURSOR_WINDOW {
            return None;
        }
        // The bytes are in the skb but not in its head. Pull only now: bpf_skb_pull_data on every
        // skb would copy (or reallocate) the head of every GSO skb, whose headers are linear
        // already. Once pulled, the head holds the whole parse window, so this runs once.
        let want = if len < PULL_LEN { len } else { PULL_LEN };
        if self.ctx.pull_data(want as u32).is_err() {
            // SAFETY: see `new`.
            unsafe { self.pull_failed.write_volatile(1) };
            return None;
        }
        let (data, data_end) = self.bounds();
        read(data, data_end, off)
    }
}

impl Skb<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        let skb = core::hint::black_box(self.ctx.skb.skb);
        // SAFETY: the __sk_buff the kernel passed to this program.
        unsafe { (*skb).len as usize }
    }
}

frame_by_read!(['a] Skb<'a>);

/// Header bytes copied out of kernel memory into a map value (the drop tracer's copy of a dropped
/// skb's headers): `len` bytes from `base`, at most `CAP`.
pub struct Copied<const CAP: usize> {
    pub base: *const u8,
    pub len: usize,
}

impl<const CAP: usize> Copied<CAP> {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        // The first comparison is against a constant, which is what the verifier needs to accept
        // a variable offset into the map value; the second keeps the read inside what was copied.
        if off > CAP - size_of::<T>() || off + size_of::<T>() > self.len {
            return None;
        }
        // As in `read`: the checked value is the one added. Without the barrier LLVM folds the
        // constants of neighbouring reads into the offset and the verifier walks the tracer in
        // about 98,000 instructions instead of 67,000.
        let off = core::hint::black_box(off);
        // SAFETY: [base + off, + size_of::<T>()) lies inside the CAP-byte buffer (checked above),
        // read unaligned; every caller's T accepts any bytes.
        Some(unsafe { core::ptr::read_unaligned(self.base.add(off) as *const T) })
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len
    }
}

frame_by_read!([const CAP: usize] Copied<CAP>);
