//! No reply, however hostile, makes a parser panic; and what is written the way Redis writes it reads
//! back.

use proptest::prelude::*;
use replies::{Info, parse_cluster_nodes};

proptest! {
    #[test]
    fn no_text_panics(text in "\\PC{0,400}") {
        let info = Info::parse(&text);
        let _ = (info.primary_link(), info.previous_replication(), info.keys(), info.get("role"));
        let _ = info.section("replication").map(Iterator::count);
        let _ = parse_cluster_nodes(&text);
    }

    #[test]
    fn no_reply_shaped_text_panics(
        words in proptest::collection::vec("[a-z0-9:@,\\[\\]<>?.-]{0,12}", 0..14),
        lines in 1usize..4,
    ) {
        let line = words.join(" ");
        let text = vec![line.as_str(); lines].join("\n");
        let _ = parse_cluster_nodes(&text);
        let info = Info::parse(&text.replace(' ', "\r\n"));
        let _ = info.primary_link();
    }

    #[test]
    fn slot_ranges_round_trip(ranges in proptest::collection::vec((0u16..16_384, 0u16..100), 0..8)) {
        let slots: Vec<(u16, u16)> = ranges.iter().map(|&(a, len)| (a, a.saturating_add(len).min(16_383))).collect();
        let words: Vec<String> = slots.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
        let line = format!("id 127.0.0.1:7000@17000 master - 0 0 1 connected {}", words.join(" "));
        let parsed = parse_cluster_nodes(&line).expect("a generated line parses");
        let read: Vec<(u16, u16)> = parsed[0].slots.iter().map(|r| (r.start(), r.end())).collect();
        prop_assert_eq!(read, slots);
    }

    #[test]
    fn replica_lines_round_trip(offset in any::<u64>(), lag in any::<u64>(), port in 1u16.., index in 0u32..100) {
        let info = Info::parse(&format!("slave{index}:ip=10.1.2.3,port={port},state=online,offset={offset},lag={lag}\r\n"));
        let replica = &info.replicas[0];
        prop_assert_eq!((replica.index, replica.port, replica.offset, replica.lag_seconds), (index, Some(port), offset, lag));
    }
}
