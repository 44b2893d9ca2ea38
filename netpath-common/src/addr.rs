//! The 16-byte address the shared types store.

/// A 16-byte network address as the datapath stores it: IPv6, or IPv4 in the first 4 bytes with
/// the other 12 zero ([`Addr::v4`]). It derefs to the bytes, so user space reads it like the
/// `[u8; 16]` it replaces.
///
/// Why a newtype, and why 8-byte aligned: LLVM's BPF backend never inlines `memset` or `memmove`.
/// It calls compiler_builtins' generic subprograms, which loop one byte per iteration (about 5
/// instructions a byte). An assignment or zeroing of a `[u8; 16]` (alignment 1) becomes such a
/// call. With alignment 8 the datapath moves an address as two u64 words instead ([`Addr::set`],
/// [`Addr::set_v4`], [`Addr::clear`]). Every address field of the shared types already sat at an
/// 8-byte aligned offset, so the alignment changes no offset and no size.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    pub const ZERO: Addr = Addr([0; 16]);

    /// The IPv4 address `a` in the first 4 bytes, the rest zero (host code and constants; the
    /// datapath writes in place with [`Addr::set_v4`]).
    #[inline(always)]
    pub const fn v4(a: [u8; 4]) -> Addr {
        Addr([a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    #[inline(always)]
    fn words(&mut self) -> *mut u64 {
        self as *mut Addr as *mut u64
    }

    /// `*self = Addr::v4(a)` as two word stores.
    #[inline(always)]
    pub fn set_v4(&mut self, a: [u8; 4]) {
        // The first 4 bytes in memory order, whatever the endianness, in the first word.
        let lo = u32::from_ne_bytes(a) as u64;
        #[cfg(target_endian = "big")]
        let lo = lo << 32;
        let w = self.words();
        // SAFETY: `Addr` is 16 bytes, 8-byte aligned: two u64 words. The zero word is a volatile
        // store so that LLVM cannot merge it with neighbouring zero stores into a `memset` call.
        unsafe {
            w.write(lo);
            w.add(1).write_volatile(0);
        }
    }

    /// The address from its two words, as read from a frame with `Frame::ne_u64_at` (memory
    /// order kept): two word stores.
    #[inline(always)]
    pub fn set_words(&mut self, hi: u64, lo: u64) {
        let w = self.words();
        // SAFETY: as in `set_v4`.
        unsafe {
            w.write(hi);
            w.add(1).write(lo);
        }
    }

    /// `*self = *src` as two word loads and stores.
    #[inline(always)]
    pub fn set(&mut self, src: &Addr) {
        let s = src as *const Addr as *const u64;
        let d = self.words();
        // SAFETY: both are 16 bytes, 8-byte aligned, without padding. Scalar loads and stores:
        // LLVM turns only aggregate copies back into memcpy/memmove.
        unsafe {
            d.write(s.read());
            d.add(1).write(s.add(1).read());
        }
    }

    /// `*self = Addr::ZERO` as two word stores.
    #[inline(always)]
    pub fn clear(&mut self) {
        let w = self.words();
        // SAFETY: as in `set_v4`; volatile, so never merged into a `memset` call.
        unsafe {
            w.write_volatile(0);
            w.add(1).write_volatile(0);
        }
    }
}

impl core::ops::Deref for Addr {
    type Target = [u8; 16];
    #[inline(always)]
    fn deref(&self) -> &[u8; 16] {
        &self.0
    }
}

impl core::ops::DerefMut for Addr {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [u8; 16] {
        &mut self.0
    }
}

impl From<[u8; 16]> for Addr {
    #[inline(always)]
    fn from(a: [u8; 16]) -> Addr {
        Addr(a)
    }
}

impl From<Addr> for [u8; 16] {
    #[inline(always)]
    fn from(a: Addr) -> [u8; 16] {
        a.0
    }
}

impl PartialEq<[u8; 16]> for Addr {
    fn eq(&self, other: &[u8; 16]) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Addr> for [u8; 16] {
    fn eq(&self, other: &Addr) -> bool {
        *self == other.0
    }
}

/// Debug as the bytes, as before the newtype.
impl core::fmt::Debug for Addr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

// SAFETY (Words): 16 bytes, 8-byte aligned, a byte array (all-zero is valid, no padding).
unsafe impl crate::Words for Addr {}

const _: () = assert!(size_of::<Addr>() == 16 && align_of::<Addr>() == 8);

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn addr_word_helpers_match_the_byte_forms() {
        let mut a = Addr([0xff; 16]);
        a.set_v4([10, 244, 0, 2]);
        assert_eq!(a, Addr::v4([10, 244, 0, 2]));
        assert_eq!(a, [10, 244, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&a[..4], &[10, 244, 0, 2]);
        let v6 = Addr(core::array::from_fn(|i| i as u8 + 1));
        a.set(&v6);
        assert_eq!(a, v6);
        a.clear();
        assert_eq!(a, Addr::ZERO);
        assert_eq!(
            std::format!("{:?}", Addr::v4([1, 2, 3, 4])),
            std::format!("{:?}", [1u8, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
    }
}
