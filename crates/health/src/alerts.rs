//! Alerts: findings turned into deduplicated, timed alerts that fire and resolve, with subscribers.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::rules::{AlertKind, Finding, Severity};
use crate::snapshot::{unix_ms, unix_ms_opt};

/// How many resolved alerts [`AlertManager::history`] keeps.
const HISTORY: usize = 256;

/// How many events a slow subscriber may fall behind before it misses some (it then gets
/// `RecvError::Lagged` and can re-read [`AlertManager::active`]).
const SUBSCRIBER_BUFFER: usize = 1024;

/// One anomaly over time: it fires when a rule first finds it and resolves when a round no longer does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Which anomaly.
    pub kind: AlertKind,
    /// What it is about (a node's `host:port`, or `cluster`). With `kind`, the deduplication key.
    pub subject: String,
    /// How bad it is.
    pub severity: Severity,
    /// The latest finding's message.
    pub message: String,
    /// The latest finding's value.
    pub value: f64,
    /// When it fired (the time of the snapshot that first showed it).
    #[serde(with = "unix_ms")]
    pub fired_at: SystemTime,
    /// The last snapshot that still showed it.
    #[serde(with = "unix_ms")]
    pub last_seen: SystemTime,
    /// When it resolved: the first snapshot that no longer showed it. `None` while active.
    #[serde(with = "unix_ms_opt")]
    pub resolved_at: Option<SystemTime>,
}

/// A change in an alert's state, as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "alert", rename_all = "lowercase")]
#[non_exhaustive]
pub enum AlertEvent {
    /// A new alert.
    Fired(Alert),
    /// An alert that is over; `resolved_at` is set.
    Resolved(Alert),
}

impl AlertEvent {
    /// The alert the event is about.
    pub fn alert(&self) -> &Alert {
        match self {
            AlertEvent::Fired(a) | AlertEvent::Resolved(a) => a,
        }
    }
}

/// Keeps the active alerts, deduplicated by kind and subject, and tells subscribers when one fires or
/// resolves.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use health::{AlertEvent, AlertKind, AlertManager, Finding};
///
/// let mut alerts = AlertManager::new();
/// let mut events = alerts.subscribe();
/// let finding = Finding { kind: AlertKind::MemoryHigh, subject: "10.0.0.1:7000".into(), message: "95%".into(), value: 0.95 };
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
///
/// alerts.update(vec![finding.clone()], t0);
/// alerts.update(vec![finding], t0 + Duration::from_secs(30)); // the same alert: no new event
/// alerts.update(vec![], t0 + Duration::from_secs(60));
///
/// assert!(matches!(events.try_recv(), Ok(AlertEvent::Fired(a)) if a.fired_at == t0));
/// let Ok(AlertEvent::Resolved(alert)) = events.try_recv() else { panic!("expected a resolve") };
/// assert_eq!(alert.resolved_at, Some(t0 + Duration::from_secs(60)));
/// assert!(events.try_recv().is_err() && alerts.active().is_empty());
/// ```
#[derive(Debug)]
pub struct AlertManager {
    active: BTreeMap<(AlertKind, String), Alert>,
    history: VecDeque<Alert>,
    events: broadcast::Sender<AlertEvent>,
}

impl Default for AlertManager {
    fn default() -> Self {
        AlertManager::new()
    }
}

impl AlertManager {
    /// No alerts, no subscribers.
    pub fn new() -> AlertManager {
        AlertManager {
            active: BTreeMap::new(),
            history: VecDeque::new(),
            events: broadcast::channel(SUBSCRIBER_BUFFER).0,
        }
    }

    /// Applies one round's findings at time `now` (the snapshot's time): new ones fire, known ones are
    /// refreshed, missing ones resolve. Returns the events, which subscribers also receive.
    pub fn update(&mut self, findings: Vec<Finding>, now: SystemTime) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut seen = BTreeMap::new();
        for finding in findings {
            seen.entry((finding.kind, finding.subject.clone()))
                .or_insert(finding);
        }
        let gone: Vec<(AlertKind, String)> = self
            .active
            .keys()
            .filter(|key| !seen.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut alert) = self.active.remove(&key) {
                alert.resolved_at = Some(now);
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(alert.clone());
                events.push(AlertEvent::Resolved(alert));
            }
        }
        for (key, finding) in seen {
            match self.active.get_mut(&key) {
                Some(alert) => {
                    alert.message = finding.message;
                    alert.value = finding.value;
                    alert.last_seen = now;
                }
                None => {
                    let alert = Alert {
                        kind: finding.kind,
                        severity: finding.kind.severity(),
                        subject: finding.subject,
                        message: finding.message,
                        value: finding.value,
                        fired_at: now,
                        last_seen: now,
                        resolved_at: None,
                    };
                    self.active.insert(key, alert.clone());
                    events.push(AlertEvent::Fired(alert));
                }
            }
        }
        for event in &events {
            // No subscriber is not an error: the events are also returned and the state is kept.
            let _ = self.events.send(event.clone());
        }
        events
    }

    /// The active alerts, by kind then subject.
    pub fn active(&self) -> Vec<Alert> {
        self.active.values().cloned().collect()
    }

    /// The most recently resolved alerts (up to 256), oldest first.
    pub fn history(&self) -> Vec<Alert> {
        self.history.iter().cloned().collect()
    }

    /// A receiver of every later [`AlertEvent`]. A receiver that falls more than 1,024 events behind
    /// gets `RecvError::Lagged` and should re-read [`AlertManager::active`].
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn finding(kind: AlertKind, subject: &str, value: f64) -> Finding {
        Finding {
            kind,
            subject: subject.into(),
            message: format!("{kind} on {subject}"),
            value,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Feeds rounds of findings; after each, checks the events as `(fired?, kind, subject)` and the
    /// active keys.
    #[allow(clippy::type_complexity)]
    fn check(rounds: Vec<(Vec<Finding>, Vec<(bool, AlertKind, &str)>, Vec<(AlertKind, &str)>)>) {
        let mut manager = AlertManager::new();
        for (round, (findings, expected_events, expected_active)) in rounds.into_iter().enumerate() {
            let events = manager.update(findings, at(round as u64 * 30));
            let events: Vec<(bool, AlertKind, &str)> = events
                .iter()
                .map(|e| {
                    (
                        matches!(e, AlertEvent::Fired(_)),
                        e.alert().kind,
                        e.alert().subject.as_str(),
                    )
                })
                .collect();
            assert_eq!(events, expected_events, "round {round} events");
            let active: Vec<(AlertKind, String)> = manager
                .active()
                .iter()
                .map(|a| (a.kind, a.subject.clone()))
                .collect();
            let expected: Vec<(AlertKind, String)> =
                expected_active.iter().map(|(k, s)| (*k, s.to_string())).collect();
            assert_eq!(active, expected, "round {round} active");
        }
    }

    #[test]
    fn alerts_fire_once_dedup_and_resolve() {
        use AlertKind::*;
        check(vec![
            (vec![], vec![], vec![]),
            (
                vec![
                    finding(NodeDown, "a", 1.0),
                    finding(NodeDown, "a", 1.0),
                    finding(MemoryHigh, "a", 0.95),
                ],
                vec![(true, NodeDown, "a"), (true, MemoryHigh, "a")],
                vec![(NodeDown, "a"), (MemoryHigh, "a")],
            ),
            (
                vec![
                    finding(NodeDown, "a", 1.0),
                    finding(NodeDown, "b", 1.0),
                    finding(MemoryHigh, "a", 0.97),
                ],
                vec![(true, NodeDown, "b")],
                vec![(NodeDown, "a"), (NodeDown, "b"), (MemoryHigh, "a")],
            ),
            (
                vec![finding(NodeDown, "b", 1.0)],
                vec![(false, NodeDown, "a"), (false, MemoryHigh, "a")],
                vec![(NodeDown, "b")],
            ),
            (vec![], vec![(false, NodeDown, "b")], vec![]),
            // The same anomaly again is a new alert.
            (
                vec![finding(NodeDown, "a", 1.0)],
                vec![(true, NodeDown, "a")],
                vec![(NodeDown, "a")],
            ),
        ]);
    }

    #[test]
    fn alerts_keep_their_fire_time_and_get_the_latest_value() {
        let mut manager = AlertManager::new();
        manager.update(vec![finding(AlertKind::MemoryHigh, "a", 0.91)], at(0));
        manager.update(vec![finding(AlertKind::MemoryHigh, "a", 0.99)], at(30));
        let alert = &manager.active()[0];
        assert_eq!(
            (alert.fired_at, alert.last_seen, alert.value),
            (at(0), at(30), 0.99)
        );
        assert_eq!(alert.severity, Severity::Warning);
        manager.update(vec![], at(60));
        let resolved = &manager.history()[0];
        assert_eq!((resolved.fired_at, resolved.resolved_at), (at(0), Some(at(60))));
    }

    #[test]
    fn subscribers_receive_every_event_in_order() {
        let mut manager = AlertManager::new();
        let mut early = manager.subscribe();
        manager.update(vec![finding(AlertKind::NodeDown, "a", 1.0)], at(0));
        let mut late = manager.subscribe();
        manager.update(vec![], at(30));
        let drain = |rx: &mut broadcast::Receiver<AlertEvent>| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|e| matches!(e, AlertEvent::Fired(_)))
                .collect::<Vec<bool>>()
        };
        assert_eq!(drain(&mut early), [true, false]);
        assert_eq!(drain(&mut late), [false]);
    }

    #[test]
    fn history_is_bounded() {
        let mut manager = AlertManager::new();
        for round in 0..(HISTORY as u64 + 10) {
            manager.update(
                vec![finding(AlertKind::NodeDown, &round.to_string(), 1.0)],
                at(round),
            );
        }
        manager.update(vec![], at(10_000));
        let history = manager.history();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history.last().map(|a| a.subject.as_str()), Some("265"));
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let mut manager = AlertManager::new();
        let events = manager.update(vec![finding(AlertKind::SlotsUncovered, "cluster", 3.0)], at(1));
        let json = serde_json::to_value(&events[0]).expect("serializes");
        assert_eq!(json["event"], "fired");
        assert_eq!(json["alert"]["kind"], "slots_uncovered");
        assert_eq!(json["alert"]["severity"], "critical");
        assert_eq!(json["alert"]["fired_at"], 1_000);
    }
}
