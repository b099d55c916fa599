//! A replica's rank among the live replicas of its service, newest first, found through the
//! NATS services API: the priority at which its saga workers pull (`jetstream::Worker`).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::{Client, service::PingResponse};
use futures::StreamExt;

/// The services-API metadata key under which each replica says when it started (nanoseconds
/// since the Unix epoch).
pub(crate) const STARTED: &str = "started";

/// The lowest priority JetStream knows: ranks past it share it.
const LAST_PRIORITY: usize = 9;
/// How often the replicas of the service are counted again.
const EVERY: Duration = Duration::from_secs(2);
/// How long the answers to one count are waited for.
const ANSWERS_WITHIN: Duration = Duration::from_millis(250);

/// How many live replicas of this service started after this one (0: the newest), at most
/// [`LAST_PRIORITY`]. The saga consumers deliver to the lowest number waiting, so the newest
/// replica takes a stage's messages in large batches and the others take what it leaves, and
/// when it goes, the next takes over at once. Until the first count, and whenever the replicas
/// cannot be counted, the rank stays what it was (at first 0).
#[derive(Debug, Clone, Default)]
pub struct Rank(Arc<AtomicUsize>);

impl Rank {
    /// A rank that stays `rank` (for tools and tests; services keep theirs with [`Handlers`]).
    ///
    /// [`Handlers`]: super::Handlers
    pub fn fixed(rank: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(rank)))
    }

    /// The rank now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, rank: usize) {
        self.0.store(rank, Ordering::Relaxed);
    }
}

/// This replica as the services API names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Replica {
    /// When it started ([`STARTED`]); a replica that does not say counts as the oldest.
    pub(crate) started: u128,
    /// Its services-API id, which orders replicas that started at the same moment.
    pub(crate) id: String,
}

impl Replica {
    fn of(ping: &PingResponse) -> Self {
        Self {
            started: ping
                .metadata
                .get(STARTED)
                .and_then(|started| started.parse().ok())
                .unwrap_or(0),
            id: ping.id.clone(),
        }
    }
}

/// The rank of `me` among `replicas` (itself among them or not): how many started after it.
fn rank_among<'a>(me: &Replica, replicas: impl IntoIterator<Item = &'a Replica>) -> usize {
    replicas
        .into_iter()
        .filter(|other| *other > me)
        .count()
        .min(LAST_PRIORITY)
}

/// Counts the replicas of `service` every [`EVERY`] and keeps `rank` up to date, until aborted.
pub(crate) async fn keep(client: Client, service: String, me: Replica, rank: Rank) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match replicas(&client, &service).await {
            Ok(replicas) => rank.set(rank_among(&me, replicas.values())),
            Err(error) => tracing::debug!(%error, "cannot count the replicas; the rank stays"),
        }
    }
}

/// Every replica of `service` that answers a `$SRV.PING.<service>` within [`ANSWERS_WITHIN`].
async fn replicas(client: &Client, service: &str) -> anyhow::Result<HashMap<String, Replica>> {
    let inbox = client.new_inbox();
    let answers = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(format!("$SRV.PING.{service}"), inbox, bytes::Bytes::new())
        .await?;
    let mut replicas = HashMap::new();
    let mut answers = std::pin::pin!(answers.take_until(tokio::time::sleep(ANSWERS_WITHIN)));
    while let Some(answer) = answers.next().await {
        if let Ok(ping) = serde_json::from_slice::<PingResponse>(&answer.payload) {
            replicas.insert(ping.id.clone(), Replica::of(&ping));
        }
    }
    Ok(replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(started: u128, id: &str) -> Replica {
        Replica {
            started,
            id: id.to_owned(),
        }
    }

    #[test]
    fn the_newest_replica_ranks_first_and_ties_are_broken_by_id() {
        let all = [
            replica(10, "a"),
            replica(30, "b"),
            replica(20, "c"),
            replica(30, "d"),
        ];
        let ranks: Vec<usize> = all.iter().map(|me| rank_among(me, &all)).collect();
        assert_eq!(ranks, [3, 1, 2, 0]);
    }

    #[test]
    fn ranks_past_the_last_priority_share_it() {
        let all: Vec<Replica> = (0..12).map(|n| replica(n, "x")).collect();
        assert_eq!(rank_among(&all[0], &all), LAST_PRIORITY);
        assert_eq!(rank_among(&all[11], &all), 0);
    }

    #[test]
    fn a_replica_alone_or_unknown_to_the_others_ranks_first() {
        assert_eq!(rank_among(&replica(5, "a"), &[]), 0);
        assert_eq!(rank_among(&replica(5, "a"), &[replica(1, "b")]), 0);
    }
}
