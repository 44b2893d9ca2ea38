fn main(){ let _ = aya::util::KernelVersion::current(); }
