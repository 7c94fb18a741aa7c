//! Alerts on real faults: each test starts its own 3 + 3 cluster (node timeout 2 s), holds the
//! exclusive test lock, runs the health loop in the background and watches its alert events.

use std::time::{Duration, Instant};

use cluster_config::ClusterConfig;
use health::{
    AlertEvent, AlertKind, DistributionDimension, HealthChecker, HealthConfig, HealthConfigBuilder,
    HealthStatus, Thresholds,
};
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};
use tokio::sync::broadcast;

/// Every slot of the cluster.
const SLOTS: u32 = sharding::SLOT_COUNT as u32;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `cluster-node-timeout` of the test clusters (local-cluster's test settings).
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// The tests' health settings; a test may change some before `build`.
fn settings() -> HealthConfigBuilder {
    let mut thresholds = Thresholds::default();
    // Long enough to be seen, short enough that the tests see it resolve.
    thresholds.failover_hold = Duration::from_secs(1);
    HealthConfig::builder()
        .interval(Duration::from_millis(300))
        .at_risk_interval(Duration::from_millis(300))
        .node_timeout(Duration::from_millis(250))
        .thresholds(thresholds)
        .record_metrics(false)
}

async fn start() -> Result<(LocalCluster, HealthChecker), Box<dyn std::error::Error>> {
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    let checker = HealthChecker::new(
        &ClusterConfig::builder().nodes(cluster.seeds()).build()?,
        settings().build()?,
    )?;
    healthy_round(&checker).await;
    Ok((cluster, checker))
}

/// Runs rounds until one is healthy. Right after start-up a node may still list a replica it has not
/// heard about by gossip as a primary without slots, which health rightly reports.
async fn healthy_round(checker: &HealthChecker) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let round = checker.check_now().await;
        if round.summary.status == HealthStatus::Healthy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy within 10 s of start: {:#?}",
            round.summary.active_alerts
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for events until every `(fired, kind, subject)` of `wanted` was seen, and returns when each
/// was seen (time since `since`) and every event that came meanwhile. Fails after `timeout` naming
/// what is missing and what came.
async fn wait_for(
    events: &mut broadcast::Receiver<AlertEvent>,
    wanted: &[(bool, AlertKind, &str)],
    since: Instant,
    timeout: Duration,
) -> (Vec<Duration>, Vec<(bool, AlertKind, String, Duration)>) {
    let mut seen: Vec<Option<Duration>> = vec![None; wanted.len()];
    let mut log = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.iter().any(Option::is_none) {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => panic!("alert subscription failed: {e}"),
            Err(_) => {
                let missing: Vec<_> = wanted
                    .iter()
                    .zip(&seen)
                    .filter(|(_, s)| s.is_none())
                    .map(|(w, _)| w)
                    .collect();
                panic!("within {timeout:?}: missing {missing:?}; events were {log:#?}");
            }
        };
        let fired = matches!(event, AlertEvent::Fired(_));
        let alert = event.alert();
        log.push((fired, alert.kind, alert.subject.clone(), since.elapsed()));
        for (want, slot) in wanted.iter().zip(seen.iter_mut()) {
            if slot.is_none() && *want == (fired, alert.kind, alert.subject.as_str()) {
                *slot = Some(since.elapsed());
            }
        }
    }
    (seen.into_iter().flatten().collect(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_alerts_node_down_and_failover_which_resolve_after_the_promotion() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let (cluster, checker) = start().await?;
    let mut events = checker.subscribe();
    let _loop = checker.spawn();

    let victim = cluster.primary_for_slot(0).await?;
    let victim_addr = victim.addr();
    let killed = Instant::now();
    victim.kill()?;
    // The cluster's own failover (node timeout, FAIL agreement, the replica's 0.5-1 s election delay) is
    // timed alongside, so that the health loop's part can be told apart from Redis's.
    // One round can resolve NodeDown (the slots moved) and fire FailoverObserved, so all four events
    // are awaited together.
    let wanted = [
        (true, AlertKind::NodeDown, victim_addr.as_str()),
        (true, AlertKind::FailoverObserved, victim_addr.as_str()),
        (false, AlertKind::NodeDown, victim_addr.as_str()),
        (false, AlertKind::FailoverObserved, victim_addr.as_str()),
    ];
    let (seen, promoted) = tokio::join!(
        wait_for(
            &mut events,
            &wanted,
            killed,
            NODE_TIMEOUT + Duration::from_secs(15)
        ),
        async {
            let promoted = cluster.wait_for_promotion(victim, Duration::from_secs(15)).await;
            (promoted, killed.elapsed())
        }
    );
    let (promoted, promoted_after) = (promoted.0?, promoted.1);
    let [down, failover, down_resolved, failover_resolved] = seen.0[..] else {
        panic!("wait_for returns one time per wanted event: {seen:?}")
    };
    println!(
        "kill -9 {victim_addr}: node_down after {down:?}, promotion complete after {promoted_after:?}, \
         failover_observed after {failover:?}; resolved after {down_resolved:?} and {failover_resolved:?}"
    );
    let health = checker.config();
    let one_round = health.interval() + health.node_timeout() + Duration::from_millis(500);
    assert!(down <= one_round, "node_down after {down:?}");
    // Every node agreeing (what `wait_for_promotion` waits for) comes after the promoted node itself
    // knows, which is what a round reads; one round later at the most, the alert has fired.
    assert!(
        failover <= promoted_after + one_round,
        "failover_observed after {failover:?}"
    );
    assert!(
        down_resolved <= promoted_after + one_round,
        "node_down resolved after {down_resolved:?}"
    );
    assert!(failover_resolved >= failover + health.thresholds().failover_hold);

    let summary = checker.cluster_health_summary().expect("rounds ran");
    assert_eq!(
        summary.slots_covered,
        Some(SLOTS),
        "the promoted replica serves the slots again"
    );
    assert_eq!((summary.nodes_connected, summary.nodes_total), (5, 6));
    // What stays true while the dead node is gone: it is down (serving nothing now), the cluster flags
    // it FAIL, and the promoted primary has no replica.
    let active: Vec<(AlertKind, String)> = summary
        .active_alerts
        .iter()
        .map(|a| (a.kind, a.subject.clone()))
        .collect();
    for expected in [
        (AlertKind::ReplicaDown, victim_addr.clone()),
        (AlertKind::NodeFail, victim_addr.clone()),
        (AlertKind::PrimaryWithoutReplica, promoted.addr()),
    ] {
        assert!(active.contains(&expected), "{expected:?} not in {active:?}");
    }
    let failovers = checker.failovers();
    assert!(
        checker
            .alert_history()
            .iter()
            .any(|a| a.kind == AlertKind::FailoverObserved && a.resolved_at.is_some()),
        "failovers {failovers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_primary_alerts_and_everything_resolves_after_it_resumes() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let (cluster, checker) = start().await?;
    let mut events = checker.subscribe();
    let _loop = checker.spawn();

    let victim = cluster.primary_for_slot(0).await?;
    let victim_addr = victim.addr();
    let paused = Instant::now();
    victim.pause()?;
    // The node stops answering at once; the cluster flags it PFAIL after its node timeout.
    let (first, _) = wait_for(
        &mut events,
        &[(true, AlertKind::NodeDown, &victim_addr)],
        paused,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        first[0] < Duration::from_secs(2),
        "a frozen node was noticed after {:?}",
        first[0]
    );
    let flagged = async {
        loop {
            let active = checker.active_alerts();
            if active.iter().any(|a| {
                matches!(a.kind, AlertKind::NodePfail | AlertKind::NodeFail) && a.subject == victim_addr
            }) {
                return active;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(NODE_TIMEOUT + Duration::from_secs(8), flagged)
        .await
        .map_err(|_| {
            format!(
                "no PFAIL/FAIL alert for {victim_addr}: {:#?}",
                checker.active_alerts()
            )
        })?;

    victim.resume()?;
    let resumed = Instant::now();
    cluster.wait_until_healthy(Duration::from_secs(30)).await?;
    let settled = async {
        loop {
            let summary = checker.cluster_health_summary();
            if summary.as_ref().is_some_and(|s| {
                s.status == HealthStatus::Healthy
                    && s.taken_at > std::time::SystemTime::now() - Duration::from_millis(500)
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), settled)
        .await
        .map_err(|_| {
            format!(
                "{:?} after SIGCONT, still: {:#?}",
                resumed.elapsed(),
                checker.active_alerts()
            )
        })?;
    let history = checker.alert_history();
    assert!(
        history
            .iter()
            .any(|a| a.kind == AlertKind::NodeDown && a.subject == victim_addr),
        "{history:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_slots_alert_as_uncovered_until_they_are_assigned_again() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let (cluster, checker) = start().await?;
    let owner = cluster.primary_for_slot(SLOTS as u16 - 1).await?;
    // CLUSTER DELSLOTS acts on the receiving node only, so every node forgets the slots' owner.
    for node in cluster.nodes() {
        node.command::<(), _, _>(["CLUSTER", "DELSLOTS", "16382", "16383"])
            .await?;
    }
    // Every node forgot the slots, but a node may hear of them again from one that had not yet: the
    // first round after the gossip settles shows them uncovered.
    let deadline = Instant::now() + Duration::from_secs(5);
    let round = loop {
        let round = checker.check_now().await;
        if round
            .summary
            .active_alerts
            .iter()
            .any(|a| a.kind == AlertKind::SlotsUncovered)
        {
            break round;
        }
        assert!(
            Instant::now() < deadline,
            "no slots_uncovered alert: {:#?}",
            round.summary
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        round.summary.slots_covered,
        Some(SLOTS - 2),
        "{:#?}",
        round.snapshot.topology
    );
    assert_eq!(round.summary.status, HealthStatus::Degraded);
    let uncovered: Vec<f64> = round
        .summary
        .active_alerts
        .iter()
        .filter(|a| a.kind == AlertKind::SlotsUncovered)
        .map(|a| a.value)
        .collect();
    assert_eq!(uncovered, [2.0], "{:#?}", round.summary.active_alerts);

    // The owner claims the slots again; the other nodes learn it by gossip.
    owner
        .command::<(), _, _>(["CLUSTER", "ADDSLOTSRANGE", "16382", "16383"])
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        let round = checker.check_now().await;
        if let Some(event) = round
            .events
            .iter()
            .find(|e| matches!(e, AlertEvent::Resolved(a) if a.kind == AlertKind::SlotsUncovered))
        {
            assert_eq!(round.summary.slots_covered, Some(SLOTS));
            break event.clone();
        }
        assert!(
            Instant::now() < deadline,
            "slots still uncovered: {:#?}",
            round.summary
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resolved.alert().subject, "cluster");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_attached_a_killed_primary_is_judged_at_once_not_at_the_next_interval() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    let client =
        cluster_client::ClusterClient::connect(ClusterConfig::builder().nodes(cluster.seeds()).build()?)
            .await?;
    let health = settings()
        // Only the client's events can start a round within this test.
        .interval(Duration::from_secs(120))
        .at_risk_interval(Duration::from_secs(120))
        .build()?;
    let checker = HealthChecker::for_client(&client, health)?;
    let mut events = checker.subscribe();
    let _loop = checker.spawn();
    // Traffic, as an application would send: the client notices a dead node through it.
    let traffic = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let _ = client
                    .get(format!("health:traffic:{}", i % 1_000).as_bytes())
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    healthy_round(&checker).await;

    let victim = cluster.primary_for_slot(0).await?;
    let victim_addr = victim.addr();
    let killed = Instant::now();
    victim.kill()?;
    // The client's FailoverObserved event starts a round at once; its NodeDown event usually starts
    // one earlier still (within a node timeout of the kill), if the client reports the node down.
    let wanted = [(true, AlertKind::FailoverObserved, victim_addr.as_str())];
    let ((seen, log), promoted) = tokio::join!(
        wait_for(&mut events, &wanted, killed, Duration::from_secs(20)),
        async {
            let promoted = cluster.wait_for_promotion(victim, Duration::from_secs(15)).await;
            (promoted, killed.elapsed())
        }
    );
    traffic.abort();
    let promoted_after = promoted.1;
    promoted.0?;
    let node_down = log
        .iter()
        .find(|(fired, kind, subject, _)| *fired && *kind == AlertKind::NodeDown && *subject == victim_addr);
    println!(
        "with a client: failover_observed after {:?} (promotion {promoted_after:?}), node_down after {:?}",
        seen[0],
        node_down.map(|e| e.3)
    );
    let bound = promoted_after + Duration::from_secs(3);
    assert!(
        seen[0] < bound,
        "failover_observed after {:?}; events {log:#?}",
        seen[0]
    );
    if let Some((_, _, _, at)) = node_down {
        assert!(*at < Duration::from_secs(3), "node_down after {at:?}");
    }
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moved_onto_one_primary_alert_as_skewed_until_they_move_back() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let (cluster, checker) = start().await?;
    let round = checker.check_now().await;
    assert!(
        !round
            .summary
            .active_alerts
            .iter()
            .any(|a| a.kind == AlertKind::DistributionSkewed),
        "an even cluster: {:#?}",
        round.summary.active_alerts
    );
    let from = cluster.primary_for_slot(0).await?;
    let to = cluster.primary_for_slot(SLOTS as u16 - 1).await?;
    // 5,461 / 5,461 / 5,462 becomes 3,961 / 5,461 / 6,962: the busiest at 1.27x the mean (bound 1.25),
    // a coefficient of variation of 0.22 (bound 0.10).
    cluster.migrate_slots(1_500, from, to).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let round = loop {
        let round = checker.check_now().await;
        if round
            .summary
            .active_alerts
            .iter()
            .any(|a| a.kind == AlertKind::DistributionSkewed)
        {
            break round;
        }
        assert!(
            Instant::now() < deadline,
            "no distribution_skewed alert after moving 1,500 slots: {:#?}",
            round.distribution
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let alert = round
        .summary
        .active_alerts
        .iter()
        .find(|a| a.kind == AlertKind::DistributionSkewed)
        .expect("the alert is active");
    assert_eq!(alert.subject, "cluster");
    assert!(
        alert
            .message
            .contains(&format!("slots: {} holds 1.27x", to.addr())),
        "{}",
        alert.message
    );
    // An empty cluster: only slots can be judged.
    let dimensions: Vec<DistributionDimension> = round.distribution.iter().map(|d| d.dimension).collect();
    assert_eq!(dimensions, [DistributionDimension::Slots]);

    // Moving the slots back resolves it.
    cluster.migrate_slots(1_500, to, from).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let round = checker.check_now().await;
        if round
            .events
            .iter()
            .any(|e| matches!(e, AlertEvent::Resolved(a) if a.kind == AlertKind::DistributionSkewed))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still skewed after moving the slots back: {:#?}",
            round.distribution
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The per-node percentiles cover the last collection interval, not the client's life: a window
/// after fast calls reads fast, the window of a slow phase (a primary sleeping in `DEBUG SLEEP`
/// while calls wait on it) reads slow, the next fast window reads fast again, and a window
/// without calls reads "no data".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_cover_the_last_interval_so_a_slow_phase_shows_and_passes() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    let client =
        cluster_client::ClusterClient::connect(ClusterConfig::builder().nodes(cluster.seeds()).build()?)
            .await?;
    let checker = HealthChecker::for_client(&client, settings().build()?)?;
    let victim = cluster.primary_for_slot(0).await?;
    let victim_addr = victim.addr();
    let topology = client.topology();
    let keys: Vec<String> = (0u64..)
        .map(|i| format!("health:window:{i}"))
        .filter(|k| {
            topology
                .shard_for_key(k.as_bytes())
                .is_some_and(|s| s.primary == victim_addr)
        })
        .take(16)
        .collect();
    let p99_of = |round: &health::Observation| {
        round
            .snapshot
            .node(&victim_addr)
            .and_then(|n| n.client.as_ref())
            .and_then(|c| c.latency_p99)
    };
    let fast_phase = || async {
        for _ in 0..25 {
            for key in &keys {
                client.get(key.as_bytes()).await?;
            }
        }
        Ok::<(), cluster_client::Error>(())
    };
    // The rounds before: whatever connecting cost is taken out of the window.
    checker.check_now().await;
    fast_phase().await?;
    let fast = p99_of(&checker.check_now().await).ok_or("no latency after 400 calls")?;

    // The slow phase: the primary sleeps 400 ms, and 16 calls wait on it meanwhile.
    let sleep = Duration::from_millis(400);
    let (slept, slow_calls) =
        tokio::join!(victim.command::<String, _, _>(["DEBUG", "SLEEP", "0.4"]), async {
            // The calls go out while the node sleeps.
            tokio::time::sleep(Duration::from_millis(50)).await;
            futures::future::join_all(keys.iter().map(|k| client.get(k.as_bytes()))).await
        });
    slept?;
    assert!(slow_calls.iter().all(Result::is_ok), "{slow_calls:?}");
    let slow_round = checker.check_now().await;
    let slow = p99_of(&slow_round).ok_or("no latency after the slow calls")?;
    assert!(
        slow >= sleep / 2,
        "the window of the slow phase reads p99 {slow:?} (the fast one read {fast:?})"
    );
    assert!(
        slow_round.summary.latency_p99.is_some_and(|p| p >= sleep / 2),
        "the summary's p99 {:?} misses the slow phase",
        slow_round.summary.latency_p99
    );

    // The window after the slow phase reports the new phase's latency, not a mix of the client's life.
    fast_phase().await?;
    let after = p99_of(&checker.check_now().await).ok_or("no latency after the fast calls")?;
    assert!(
        after < sleep / 2,
        "the window after the slow phase still reads p99 {after:?} (slow phase {slow:?})"
    );

    // No calls in the interval: no data, not zero.
    assert_eq!(p99_of(&checker.check_now().await), None);
    client.close().await;
    Ok(())
}
