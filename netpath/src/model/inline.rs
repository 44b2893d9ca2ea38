//! Short strings formatted on the stack: addresses, MACs and times of the event hot path, where a
//! `String` per field cost more than everything else the reader does per event.
use std::{
    fmt::{self, Write as _},
    net::Ipv6Addr,
};

use netpath_common::FAMILY_IPV6;

/// A string of at most `N` bytes, stored inline. Writes past `N` fail (`fmt::Error`) and keep what
/// fitted; every user sizes `N` for its longest value.
#[derive(Clone, Copy)]
pub struct Inline<const N: usize> {
    len: u8,
    buf: [u8; N],
}

impl<const N: usize> Inline<N> {
    pub const fn new() -> Self {
        const { assert!(N <= u8::MAX as usize) };
        Inline { len: 0, buf: [0; N] }
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: only whole `&str`s and ASCII bytes are ever copied in (`write_str`, `push_ascii`).
        unsafe { std::str::from_utf8_unchecked(&self.buf[..self.len as usize]) }
    }

    /// Append bytes the caller knows are ASCII (digits, hex, separators).
    fn push_ascii(&mut self, b: &[u8]) {
        let at = self.len as usize;
        let n = b.len().min(N - at);
        debug_assert!(b.is_ascii());
        self.buf[at..at + n].copy_from_slice(&b[..n]);
        self.len += n as u8;
    }
}

impl<const N: usize> Default for Inline<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Inline<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = self.len as usize;
        if s.len() > N - at {
            return Err(fmt::Error);
        }
        self.buf[at..at + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len() as u8;
        Ok(())
    }
}

impl<const N: usize> std::ops::Deref for Inline<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Display for Inline<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Inline<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq for Inline<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> serde::Serialize for Inline<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `02:00:0a:f4:00:02`, as `format!("{b:02x}")` per byte joined by `:` wrote it.
pub fn mac(m: &[u8; 6]) -> Inline<17> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b':'; 17];
    for (i, b) in m.iter().enumerate() {
        out[3 * i] = HEX[(b >> 4) as usize];
        out[3 * i + 1] = HEX[(b & 15) as usize];
    }
    let mut s = Inline::new();
    s.push_ascii(&out);
    s
}

/// The longest address: an IPv6 address with an embedded IPv4 one.
pub const ADDR_MAX: usize = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".len();

/// An address as `flows::addr` (that is, `IpAddr`'s `Display`) writes it: IPv6 for
/// `FAMILY_IPV6`, else the first four bytes as IPv4.
pub fn addr(family: u8, a: &[u8; 16]) -> Inline<ADDR_MAX> {
    let mut s = Inline::new();
    if family == FAMILY_IPV6 {
        // std's Display writes straight into the formatter (no allocation) and owns the
        // compression rules; rare enough on the event path not to hand-roll.
        let _ = write!(s, "{}", Ipv6Addr::from(*a));
    } else {
        ipv4_into(&mut s, [a[0], a[1], a[2], a[3]]);
    }
    s
}

/// Dotted quad without the formatting machinery (four `u8` `Display`s cost more than the rest of
/// an event's decode).
fn ipv4_into<const N: usize>(s: &mut Inline<N>, a: [u8; 4]) {
    let mut out = [0u8; 15];
    let mut n = 0;
    for (i, b) in a.into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        if b >= 100 {
            out[n] = b'0' + b / 100;
            n += 1;
        }
        if b >= 10 {
            out[n] = b'0' + b / 10 % 10;
            n += 1;
        }
        out[n] = b'0' + b % 10;
        n += 1;
    }
    s.push_ascii(&out[..n]);
}

/// Decimal of a small number (a protocol number, a port).
pub fn decimal(v: u16) -> Inline<5> {
    let mut s = Inline::new();
    let _ = s.write_str(itoa::Buffer::new().format(v));
    s
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    #[test]
    fn addresses_match_std_display() {
        let mut a = [0u8; 16];
        for v4 in [
            [0, 0, 0, 0],
            [10, 244, 0, 2],
            [255, 255, 255, 255],
            [1, 20, 100, 9],
            [192, 168, 10, 199],
        ] {
            a[..4].copy_from_slice(&v4);
            a[4] = 77; // bytes past an IPv4 address are not part of it
            assert_eq!(&*addr(4, &a), IpAddr::V4(Ipv4Addr::from(v4)).to_string());
        }
        for v6 in [
            "::",
            "fd00::1",
            "fe80::1:2:3:4",
            "::ffff:10.0.0.1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: Ipv6Addr = v6.parse().unwrap();
            assert_eq!(&*addr(FAMILY_IPV6, &ip.octets()), ip.to_string());
        }
        let widest: Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap_or(Ipv6Addr::LOCALHOST);
        assert_eq!(&*addr(FAMILY_IPV6, &widest.octets()), widest.to_string());
    }

    #[test]
    fn macs_match_the_old_formatting() {
        for m in [[0u8; 6], [2, 0, 0, 0, 0, 2], [0xff, 0xab, 0x10, 0x0f, 0x99, 0xc3]] {
            let old = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            assert_eq!(&*mac(&m), old);
        }
    }

    #[test]
    fn overflow_fails_and_keeps_what_fitted() {
        let mut s = Inline::<3>::new();
        assert!(s.write_str("ab").is_ok());
        assert!(s.write_str("cd").is_err());
        assert_eq!(&*s, "ab");
        assert_eq!(&*decimal(65535), "65535");
    }
}
