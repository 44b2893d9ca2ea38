//! The IPFIX exporter's health as rows: what `netpath status` prints, `/v1/status` serves and the
//! metrics exporter turns into `netpath_ipfix_*`.
use std::{collections::BTreeMap, fmt::Write as _};

/// The kinds a failed send is counted by (every one is reported, zero or not).
pub const SEND_ERROR_KINDS: [&str; 4] = ["refused", "unreachable", "would_block", "other"];

/// The exporter (`--ipfix`): its settings, what it exported, and each collector's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IpfixStatus {
    /// `--ipfix-interval`: a flow still going is reported this often (active timeout).
    pub interval_s: u64,
    /// `--ipfix-idle-timeout`: a flow without a packet for this long has ended (idle timeout).
    pub idle_timeout_s: u64,
    /// How often the templates are sent again (UDP).
    pub template_interval_s: u64,
    /// Flows whose end (idle, FIN/RST, or the daemon stopping) was exported.
    pub flows_exported: u64,
    /// Flows that left the flow table (evicted to make room, or deleted) before their last
    /// packets were exported: those packets are in no record.
    pub flows_vanished: u64,
    /// Reads of the flow table that failed (that round exported nothing; the next one catches up).
    pub read_errors: u64,
    pub collectors: Vec<IpfixCollector>,
}

/// One collector (a UDP transport session).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IpfixCollector {
    pub address: String,
    /// Messages, data records and octets (IPFIX messages, without UDP/IP headers) handed to the
    /// network; a failed send counts in `errors` instead.
    pub messages: u64,
    pub records: u64,
    pub bytes: u64,
    /// Template records sent (every template, at start and every `template_interval_s`).
    pub templates: u64,
    /// Failed sends by kind ([`SEND_ERROR_KINDS`]).
    pub errors: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl IpfixCollector {
    pub fn new(address: String) -> IpfixCollector {
        IpfixCollector {
            address,
            errors: SEND_ERROR_KINDS.iter().map(|k| (k.to_string(), 0)).collect(),
            ..IpfixCollector::default()
        }
    }
}

impl IpfixStatus {
    /// The lines `netpath status` prints under the daemon, indented.
    pub fn text(&self) -> String {
        let mut s = format!(
            "  ipfix: every {} s, idle {} s, templates every {} s; {} flows ended and exported, {} vanished before export{}\n",
            self.interval_s,
            self.idle_timeout_s,
            self.template_interval_s,
            self.flows_exported,
            self.flows_vanished,
            if self.read_errors > 0 {
                format!(", {} failed flow table reads", self.read_errors)
            } else {
                String::new()
            }
        );
        for c in &self.collectors {
            let errors: u64 = c.errors.values().sum();
            let _ = write!(
                s,
                "    {}: {} messages, {} records, {} bytes, {} templates, {} send errors",
                c.address, c.messages, c.records, c.bytes, c.templates, errors
            );
            if errors > 0 {
                let kinds: Vec<String> = c
                    .errors
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                let _ = write!(s, " ({})", kinds.join(", "));
            }
            if let Some(e) = &c.last_error {
                let _ = write!(s, "; last: {e}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_collectors_and_error_kinds() {
        let mut c = IpfixCollector::new("127.0.0.1:4739".into());
        c.messages = 3;
        *c.errors.get_mut("refused").unwrap() = 2;
        c.last_error = Some("Connection refused".into());
        let s = IpfixStatus {
            interval_s: 60,
            idle_timeout_s: 30,
            template_interval_s: 60,
            collectors: vec![c, IpfixCollector::new("[::1]:4739".into())],
            ..IpfixStatus::default()
        };
        let t = s.text();
        assert!(t.contains("every 60 s, idle 30 s"), "{t}");
        assert!(
            t.contains("127.0.0.1:4739: 3 messages") && t.contains("2 send errors (refused 2)"),
            "{t}"
        );
        assert!(
            t.contains("[::1]:4739: 0 messages") && t.contains("0 send errors\n"),
            "{t}"
        );
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["collectors"][1]["errors"]["would_block"], 0);
    }
}
