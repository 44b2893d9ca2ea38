//! BPF_PROG_TEST_RUN tests: the real eBPF object, crafted frames, asserted verdicts and counters.
//! Each one checks the kernel against the host parser (netpath_common::parse), so a verifier-driven
//! rewrite that changes behaviour is caught.
use netpath_common::{
    class,
    craft::*,
    diag,
    parse::{self, ETH_P_IP, IPPROTO_UDP},
    Config, FlowKey, DIR_EGRESS, DIR_INGRESS,
};
use netpath_tests::{require_root, testrun::*};

fn expected(frame: &[u8]) -> parse::Parsed {
    parse::parse(frame, &Config::default(), None)
}

/// Every sample frame on every hook: passed, counted once in the host parser's class with the
/// frame's length, and accounted to the host parser's flow.
#[test]
fn bpf_testrun_every_class_on_every_hook() {
    require_root();
    for (hook, dir, want_ret) in [
        ("xdp", DIR_INGRESS, XDP_PASS),
        ("tc-ingress", DIR_INGRESS, TC_ACT_UNSPEC),
        ("tc-egress", DIR_EGRESS, TC_ACT_UNSPEC),
    ] {
        let dp = Datapath::load(1024);
        let mut seen = [false; class::COUNT];
        for (name, frame, _) in sample_frames() {
            let want = expected(&frame);
            let before = dp.counters(dir);
            let r = dp.hook(hook, &frame);
            assert_eq!(r.ret, want_ret, "{hook} {name}: verdict");
            let after = dp.counters(dir);
            for c in 0..class::COUNT {
                let (dp_, db) = (
                    after.class[c].packets - before.class[c].packets,
                    after.class[c].bytes - before.class[c].bytes,
                );
                if c == want.class as usize {
                    assert_eq!(
                        (dp_, db),
                        (1, frame.len() as u64),
                        "{hook} {name}: class {}",
                        class::name(c as u8)
                    );
                } else {
                    assert_eq!(
                        dp_,
                        0,
                        "{hook} {name}: counted in {} instead of {}",
                        class::name(c as u8),
                        class::name(want.class)
                    );
                }
            }
            seen[want.class as usize] = true;
            if want.has_flow() {
                let mut key = FlowKey {
                    ifindex: TEST_IFINDEX,
                    direction: dir,
                    ..FlowKey::default()
                };
                want.fill_key(&mut key);
                let flows = dp.maps.flows().unwrap();
                let (_, v) = flows
                    .iter()
                    .find(|(k, _)| *k == key)
                    .unwrap_or_else(|| panic!("{hook} {name}: no flow {key:?}"));
                assert!(
                    v.packets >= 1 && v.bytes >= frame.len() as u64,
                    "{hook} {name}: flow {v:?}"
                );
                if want.vxlan {
                    assert_eq!(
                        v.outer_family,
                        netpath_common::FAMILY_IPV4,
                        "{hook} {name}: underlay recorded"
                    );
                    assert_eq!(&v.outer_src[..4], &IP_NODE1);
                }
            }
        }
        for c in [
            class::ARP,
            class::ICMP,
            class::ICMP6,
            class::TCP,
            class::UDP,
            class::VXLAN,
            class::OTHER_L2,
        ] {
            assert!(seen[c as usize], "sample frames lack class {}", class::name(c));
        }
        eprintln!("BPF test bpf_testrun_every_class_on_every_hook: {hook} ok");
    }
}

/// Every truncation of every header type (from the 14-byte minimum TEST_RUN accepts): never
/// dropped, counted exactly as the host parser classes it, malformed whenever a header is cut.
#[test]
fn bpf_testrun_every_truncation_is_counted_malformed_and_passed() {
    require_root();
    let dp = Datapath::load(4096);
    let mut malformed = 0u64;
    let mut runs = 0u64;
    for (name, frame, header_end) in sample_frames() {
        for cut in 14..frame.len() {
            let f = &frame[..cut];
            let want = expected(f);
            if cut < header_end {
                assert_eq!(want.class, class::MALFORMED, "host parser: {name} cut at {cut}");
            }
            let before = dp.counters(DIR_INGRESS);
            assert_eq!(dp.hook("xdp", f).ret, XDP_PASS, "{name} cut at {cut}: dropped");
            let after = dp.counters(DIR_INGRESS);
            let c = want.class as usize;
            assert_eq!(
                after.class[c].packets - before.class[c].packets,
                1,
                "{name} cut at {cut}: not counted as {}",
                class::name(want.class)
            );
            assert_eq!(
                after.class[c].bytes - before.class[c].bytes,
                cut as u64,
                "{name} cut at {cut}: bytes"
            );
            malformed += u64::from(want.class == class::MALFORMED);
            runs += 1;
        }
    }
    let d = dp.maps.diag().unwrap();
    let by_reason: u64 = d[diag::MALFORMED_BASE as usize..].iter().sum();
    assert_eq!(by_reason, malformed, "malformed frames by reason add up");
    assert!(malformed > 500, "only {malformed} malformed of {runs}");
    eprintln!("BPF test bpf_testrun_every_truncation: {runs} runs, {malformed} malformed, all passed");
}

/// XDP and TC report the same numbers for the same frames.
#[test]
fn bpf_testrun_xdp_and_tc_agree() {
    require_root();
    let dp = Datapath::load(1024);
    for (_, frame, _) in sample_frames() {
        dp.hook("xdp", &frame);
        dp.hook("tc-egress", &frame);
    }
    assert_eq!(dp.counters(DIR_INGRESS), dp.counters(DIR_EGRESS));
}

/// Configured VXLAN ports: a frame to 9999 is plain UDP by default, VXLAN once configured.
#[test]
fn bpf_testrun_vxlan_port_is_configurable() {
    require_root();
    let inner = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, b"x")));
    let frame = vxlan4(IP_NODE1, IP_NODE2, 9999, 7, &inner);
    let dp = Datapath::load(64);
    dp.hook("xdp", &frame);
    assert_eq!(dp.counters(DIR_INGRESS).class[class::UDP as usize].packets, 1);
    let mut ebpf = netpath::datapath::loader::load(&netpath::datapath::loader::LoadOptions {
        config: netpath::daemon::config::vxlan_config(&[9999]).unwrap(),
        flow_table_size: 64,
        pin_dir: None,
        ..netpath::datapath::loader::LoadOptions::default()
    })
    .unwrap();
    netpath::datapath::attach::load_programs(&mut ebpf, netpath::datapath::attach::Programs::All).unwrap();
    let maps = netpath::datapath::maps::Maps::take(&mut ebpf).unwrap();
    let dp = Datapath::new(ebpf, maps);
    dp.hook("xdp", &frame);
    assert_eq!(dp.counters(DIR_INGRESS).class[class::VXLAN as usize].packets, 1);
    let flows = dp.maps.flows().unwrap();
    assert!(
        flows.iter().any(|(k, _)| k.vni == 7 && k.sport == 1 && k.dport == 2),
        "{flows:?}"
    );
}

/// Per-peer VXLAN counters on every hook: a VXLAN frame counts under its interface, direction and
/// the two underlay addresses, local first (the outer source on egress, the destination on
/// ingress), so one node's egress row and the other's ingress row name the same pair; other
/// frames add nothing. A full table passes a new peer's frame and counts it in
/// `PEER_INSERT_FAILED`.
#[test]
fn bpf_testrun_vxlan_peers_by_direction_and_fail_open_when_full() {
    use netpath_common::peer::{PeerCounters, PeerKey, PEER_TABLE_SIZE};
    require_root();
    let inner = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, b"x")));
    let frame = vxlan4(IP_NODE1, IP_NODE2, 8472, 1, &inner);
    let plain = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1000, 53, b"q")));
    for (hook, dir, want_ret) in [
        ("xdp", DIR_INGRESS, XDP_PASS),
        ("tc-ingress", DIR_INGRESS, TC_ACT_UNSPEC),
        ("tc-egress", DIR_EGRESS, TC_ACT_UNSPEC),
    ] {
        let mut dp = Datapath::load(64);
        for _ in 0..3 {
            assert_eq!(dp.hook(hook, &frame).ret, want_ret, "{hook}");
        }
        dp.hook(hook, &plain);
        let rows = dp.maps.vxlan_peers().unwrap();
        let (local, peer) = match dir {
            DIR_EGRESS => (IP_NODE1, IP_NODE2),
            _ => (IP_NODE2, IP_NODE1),
        };
        assert_eq!(rows.len(), 1, "{hook}: {rows:?}");
        let (k, c) = &rows[0];
        assert_eq!(
            (k.ifindex, k.direction, k.family, &k.local[..4], &k.peer[..4]),
            (TEST_IFINDEX, dir, netpath_common::FAMILY_IPV4, &local[..], &peer[..]),
            "{hook}: {k:?}"
        );
        assert!(
            k.local[4..].iter().chain(&k.peer[4..]).all(|b| *b == 0),
            "{hook}: {k:?}"
        );
        assert_eq!(
            *c,
            PeerCounters {
                packets: 3,
                bytes: 3 * frame.len() as u64,
                dropped_packets: 0,
                dropped_bytes: 0,
            },
            "{hook}"
        );
        if hook != "tc-ingress" {
            continue;
        }
        // Fill the table from user space, then a frame from a new peer.
        let cpus = aya::util::nr_cpus().expect("cpus");
        let table = dp.maps.peers.as_mut().expect("peer table");
        for i in 1..PEER_TABLE_SIZE {
            let mut key = PeerKey::default();
            let a = netpath_common::Addr::v4([10, 99, (i >> 8) as u8, i as u8]);
            key.set(TEST_IFINDEX, dir, netpath_common::FAMILY_IPV4, &a, &a);
            let zero = aya::maps::PerCpuValues::try_from(vec![PeerCounters::default(); cpus]).unwrap();
            table.insert(key, zero, 0).unwrap_or_else(|e| panic!("entry {i}: {e}"));
        }
        let before = dp.maps.diag().unwrap()[diag::PEER_INSERT_FAILED as usize];
        let vxlan_before = dp.counters(dir).class[class::VXLAN as usize].packets;
        let stranger = vxlan4([172, 27, 32, 10], IP_NODE2, 8472, 1, &inner);
        assert_eq!(dp.hook(hook, &stranger).ret, want_ret, "full table: the frame passes");
        assert_eq!(
            dp.maps.diag().unwrap()[diag::PEER_INSERT_FAILED as usize],
            before + 1,
            "full table: counted"
        );
        assert_eq!(
            dp.counters(dir).class[class::VXLAN as usize].packets,
            vxlan_before + 1,
            "full table: the frame is still counted as VXLAN"
        );
        // A known peer still counts.
        dp.hook(hook, &frame);
        let rows = dp.maps.vxlan_peers().unwrap();
        assert_eq!(rows.len(), PEER_TABLE_SIZE as usize);
        assert!(
            rows.iter().any(|(k, c)| k.peer[..4] == IP_NODE1 && c.packets == 4),
            "the known peer's row"
        );
    }
}

fn memlock(dp: &Datapath) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let map = aya::maps::MapData::from_id(dp.maps.flow_map_id).unwrap();
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

/// The flow table at three times its capacity: no failed insert, every flow beyond capacity
/// counted as an eviction, the table never over capacity, its memory unchanged.
#[test]
fn bpf_testrun_flow_table_at_three_times_capacity() {
    require_root();
    const CAP: u32 = 1024;
    let dp = Datapath::load(CAP);
    let mem_before = memlock(&dp);
    let total = 3 * CAP;
    for i in 0..total {
        let frame = eth(
            ETH_P_IP,
            &ipv4(
                IP_A,
                IP_B,
                IPPROTO_UDP,
                &udp(10_000 + (i % 50_000) as u16, (i / 50_000) as u16 + 1, b"flow"),
            ),
        );
        assert_eq!(dp.hook("xdp", &frame).ret, XDP_PASS);
    }
    let st = dp.maps.flow_table(None).unwrap();
    assert_eq!(st.created, u64::from(total), "{st:?}");
    assert_eq!(st.insert_failed, 0, "{st:?}");
    assert!(st.entries <= u64::from(CAP) && st.active <= st.entries, "{st:?}");
    assert!(st.evictions >= u64::from(total - CAP), "{st:?}");
    assert_eq!(
        dp.counters(DIR_INGRESS).class[class::UDP as usize].packets,
        u64::from(total)
    );
    assert_eq!(memlock(&dp), mem_before, "flow table memory grew");
    eprintln!("BPF test flow table 3x: {st:?}");
}

/// The per-CPU, per-kind token bucket: with 100 events/s and a burst of 10, a storm of ARP frames
/// gets about 10 events through, the rest counted as suppressed, and other kinds keep their own
/// budget.
#[test]
fn bpf_testrun_event_rate_limit_holds_per_kind() {
    require_root();
    let config = Config {
        events_per_sec: 100,
        events_burst: 10,
        ..Config::default()
    };
    let mut ebpf = netpath::datapath::loader::load(&netpath::datapath::loader::LoadOptions {
        config,
        flow_table_size: 4096,
        pin_dir: None,
        ..netpath::datapath::loader::LoadOptions::default()
    })
    .unwrap();
    netpath::datapath::attach::load_programs(&mut ebpf, netpath::datapath::attach::Programs::All).unwrap();
    let maps = netpath::datapath::maps::Maps::take(&mut ebpf).unwrap();
    let dp = Datapath::new(ebpf, maps);
    let arp_frame = eth(parse::ETH_P_ARP, &arp(1, MAC_A, IP_A, [0; 6], IP_B));
    for _ in 0..1000 {
        dp.hook("xdp", &arp_frame);
    }
    let d = dp.maps.diag().unwrap();
    let (emitted, suppressed) = (d[diag::EVENTS_EMITTED as usize], d[diag::EVENTS_SUPPRESSED as usize]);
    // The first ARP frame is also a new flow (its own kind, its own bucket).
    assert!(emitted <= 10 + 1 + 5, "emitted {emitted}");
    assert!(suppressed >= 1000 - 15, "suppressed {suppressed}");
    assert_eq!(
        emitted + suppressed,
        1000 + 1,
        "every event either emitted or suppressed"
    );
    // A malformed frame is another kind: its bucket is full.
    dp.hook("xdp", &arp_frame[..20]);
    assert_eq!(dp.maps.diag().unwrap()[diag::EVENTS_EMITTED as usize], emitted + 1);
}

/// The per-packet path has no calls into compiler-builtin byte loops (memset/memmove/memcpy):
/// the BPF backend lowers align-1 copies and zeroing to them, and they tripled the parser's
/// cost once. Any new struct assignment on the datapath that brings them back fails here.
#[test]
fn bpf_datapath_has_no_byte_loop_calls() {
    require_root();
    let mut dp = Datapath::load(64);
    // The drop tracer runs on every drop of the node: loaded (not attached) to be checked too.
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let tracer: &mut aya::programs::BtfTracePoint = dp
        .ebpf
        .program_mut(netpath_common::maps::programs::DROPS)
        .unwrap()
        .try_into()
        .unwrap();
    tracer
        .load("kfree_skb", &btf)
        .expect("the verifier accepts the drop tracer");
    for name in [
        netpath::datapath::PROG_XDP,
        netpath::datapath::PROG_TC_INGRESS,
        netpath::datapath::PROG_TC_EGRESS,
        PROG_XDP_PARSE_ONLY,
        netpath_common::maps::programs::DROPS,
    ] {
        let info = dp.program(name).unwrap().info().unwrap();
        let id = info.id();
        eprintln!("BPF {name}: {:?} insns verified", info.verified_instruction_count());
        let out = std::process::Command::new("bpftool")
            .args(["prog", "dump", "xlated", "id", &id.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bpftool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().count() > 50, "{name}: no program text?");
        let calls: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("call") && (l.contains("memset") || l.contains("memmove") || l.contains("memcpy")))
            .collect();
        assert!(calls.is_empty(), "{name} calls byte loops:\n{}", calls.join("\n"));
    }
}

/// aya-log on: the datapath still verifies (the logging statements are walked now) and runs, and
/// its rare paths reach `AYA_LOGS`. A drop rule is one of them: every hook drops the frame and
/// logs the action once per frame. Logging off is what every other test here loads.
#[test]
fn bpf_testrun_datapath_with_ebpf_log_on() {
    require_root();
    const TRACE: u8 = 5;
    let mut ebpf = netpath::datapath::loader::load(&netpath::datapath::loader::LoadOptions {
        flow_table_size: 64,
        ebpf_log: TRACE,
        ..netpath::datapath::loader::LoadOptions::default()
    })
    .unwrap();
    netpath::datapath::attach::load_programs(&mut ebpf, netpath::datapath::attach::Programs::All)
        .expect("the verifier accepts the datapath with logging on");
    for name in [
        netpath::datapath::PROG_XDP,
        netpath::datapath::PROG_TC_INGRESS,
        netpath::datapath::PROG_TC_EGRESS,
    ] {
        let info = ebpf.program(name).unwrap().info().unwrap();
        eprintln!(
            "BPF test ebpf_log on: {name} {:?} insns verified",
            info.verified_instruction_count()
        );
    }
    let mut rules = netpath::datapath::rules::RuleTable::take(&mut ebpf).unwrap();
    rules
        .publish(&[netpath_common::rule::Rule {
            id: 7,
            enabled: 1,
            action: netpath_common::rule::action::DROP,
            direction: netpath_common::rule::DIR_ANY,
            class: class::UDP,
            ..Default::default()
        }])
        .unwrap();
    let mut logs: aya::maps::RingBuf<aya::maps::MapData> =
        ebpf.take_map("AYA_LOGS").expect("AYA_LOGS").try_into().unwrap();
    let maps = netpath::datapath::maps::Maps::take(&mut ebpf).unwrap();
    let dp = Datapath::new(ebpf, maps);
    let udp_frame = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, b"x")));
    const XDP_DROP: u32 = 1;
    const TC_ACT_SHOT: u32 = 2;
    for (hook, want) in [
        ("xdp", XDP_DROP),
        ("tc-ingress", TC_ACT_SHOT),
        ("tc-egress", TC_ACT_SHOT),
    ] {
        assert_eq!(dp.hook(hook, &udp_frame).ret, want, "{hook}: the drop rule applies");
    }
    // Other classes pass, and are counted, with logging on too.
    for (_, frame, _) in sample_frames() {
        let c = expected(&frame).class;
        let r = dp.hook("xdp", &frame);
        assert_eq!(r.ret == XDP_DROP, c == class::UDP, "class {}", class::name(c));
    }
    let mut records = 0;
    while let Some(r) = logs.next() {
        assert!(!r.is_empty());
        records += 1;
    }
    let udp_samples = sample_frames()
        .iter()
        .filter(|(_, f, _)| expected(f).class == class::UDP)
        .count();
    assert_eq!(records, 3 + udp_samples, "one record per rule action");
}
