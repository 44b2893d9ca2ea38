//! Zeroing and copying shared structs as u64 words, the datapath's substitute for `memset` and
//! `memmove`.

/// Types the datapath zeroes as whole u64 words ([`zero_words`]), and, when they have no padding,
/// copies as words ([`copy_words`]).
///
/// Why: LLVM's BPF backend lowers every `memset`/`memmove` (a struct assignment it cannot prove
/// non-overlapping, `Default::default()`, `[0; N]`, `ptr::write_bytes`, or several neighbouring
/// zero stores that LLVM merges into one `memset`) to a call into a byte-at-a-time loop. Volatile
/// u64 stores are never merged back into such a call, and the constant-bounded loop below is
/// fully unrolled.
///
/// # Safety
/// `Self` is 8-byte aligned, its size is a multiple of 8, and all-zero bytes are a valid value.
pub unsafe trait Words: Copy {}

/// `*dst = zeroed` as `size_of::<T>() / 8` u64 stores.
///
/// # Safety
/// `dst` is valid for writes of a `T`.
#[inline(always)]
pub unsafe fn zero_words<T: Words>(dst: *mut T) {
    const { assert!(align_of::<T>() >= 8 && size_of::<T>().is_multiple_of(8)) };
    let p = dst as *mut u64;
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: in bounds and aligned (checked above); all-zero is a valid T (trait contract).
        unsafe { p.add(i).write_volatile(0) };
        i += 1;
    }
}

/// `*dst = *src` as `size_of::<T>() / 8` u64 loads and stores.
///
/// # Safety
/// `dst` is valid for writes and `src` for reads of a `T`, and `T` has no padding bytes (every
/// byte is initialised, so reading it as u64 words is defined).
#[inline(always)]
pub unsafe fn copy_words<T: Words>(dst: *mut T, src: *const T) {
    const { assert!(align_of::<T>() >= 8 && size_of::<T>().is_multiple_of(8)) };
    let (d, s) = (dst as *mut u64, src as *const u64);
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: see the function's contract. The store is volatile so that LLVM cannot
        // recognise the loop as a memcpy/memmove idiom.
        unsafe { d.add(i).write_volatile(s.add(i).read()) };
        i += 1;
    }
}
