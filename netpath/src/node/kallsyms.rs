//! Kernel addresses to `function+0xoffset`, from /proc/kallsyms: where the kernel freed a dropped
//! packet. Read by hand: the file is three text columns, and the symbolizer crates that read it
//! (blazesym) bring DWARF and ELF machinery netpath does not otherwise need.
use std::io::{BufRead, BufReader};

/// The kernel's text symbols, sorted by address.
#[derive(Debug, Default)]
pub struct Kallsyms {
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Read /proc/kallsyms. Empty (every address shown as a number) when it cannot be read or
    /// hides addresses (`kernel.kptr_restrict`).
    pub fn load() -> Kallsyms {
        match std::fs::File::open("/proc/kallsyms") {
            Ok(f) => Self::parse(BufReader::new(f)),
            Err(e) => {
                log::warn!("reading /proc/kallsyms: {e}; drop locations will be addresses");
                Kallsyms::default()
            }
        }
    }

    pub fn parse(r: impl BufRead) -> Kallsyms {
        let mut syms: Vec<(u64, String)> = r
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| {
                let mut it = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                // Text symbols only; the functions that free packets are all text.
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable();
        Kallsyms { syms }
    }

    /// `function+0xoffset` for `addr`, or the address in hex when no symbol covers it.
    pub fn name(&self, addr: u64) -> String {
        match self.syms.partition_point(|(a, _)| *a <= addr) {
            0 => format!("{addr:#x}"),
            i => {
                let (base, name) = &self.syms[i - 1];
                format!("{name}+{:#x}", addr - base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_the_function_below_them() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81a00000 t ip_forward\nffffffff81a00800 T ip_rcv\n\
             ffffffff82000000 D some_data\n0000000000000000 T hidden\n"
                .as_bytes(),
        );
        assert_eq!(k.name(0xffffffff81a00010), "ip_forward+0x10");
        assert_eq!(k.name(0xffffffff81a00800), "ip_rcv+0x0");
        assert_eq!(k.name(0x10), "0x10");
    }
}
