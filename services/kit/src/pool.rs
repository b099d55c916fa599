//! The services' connection pool: sqlx's, with each connection kept between statements, so
//! that a statement costs PostgreSQL one round trip instead of two.
//!
//! sqlx hands a connection back to its pool through a background task that first pings it (a
//! `Sync` and its answer), whatever the statement before was: on a read, half of PostgreSQL's
//! wake-ups and a task and a wake-up more in the service. A [`Pool`] keeps the connections it
//! took from sqlx and lends them out itself; a [`Lease`] whose statements all completed goes
//! back as it is. Anything else (an error, a future dropped mid-statement, a transaction left
//! uncommitted) goes back through sqlx, whose ping sends the rollback and tests the connection.
//! So does a connection kept for [`KEEP_AT_MOST`], so that sqlx's own policies (its maximum
//! lifetime, its idle timeout) still apply to every connection.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::{
    StreamExt, TryStreamExt,
    future::BoxFuture,
    stream::{self, BoxStream},
};
use sqlx::{
    Describe, Either, Execute, Executor, PgConnection, PgPool, Postgres, SqlStr,
    pool::PoolConnection,
    postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::Probe;

/// How long a connection is kept, from the moment it was taken from sqlx's pool, before it goes
/// back there (one ping a minute a connection): sqlx then closes one past its maximum lifetime or
/// idle too long, as it would without this pool in front.
pub const KEEP_AT_MOST: Duration = Duration::from_secs(60);

/// Connections to one database, at most `size` lent at once. Cheap to clone: clones share the
/// connections. `&Pool` is an [`Executor`], as `&PgPool` is: each statement borrows a connection
/// for itself. A transaction takes a [`Lease`] first (see [`Lease`]).
#[derive(Debug, Clone)]
pub struct Pool(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    sqlx: PgPool,
    /// Connections kept, ready for the next lease.
    idle: Mutex<Vec<Kept>>,
    /// One per connection that may be lent at once.
    permits: Arc<Semaphore>,
    probe: Probe,
    acquire_timeout: Duration,
    keep_at_most: Duration,
}

#[derive(Debug)]
struct Kept {
    connection: PoolConnection<Postgres>,
    /// When it was taken from sqlx's pool: to tell whether the database failed since, and when
    /// it is due back there.
    since: Instant,
}

impl Pool {
    /// Lends at most `size` of `sqlx`'s connections at once, waiting at most `acquire_timeout`
    /// for one; drops a kept connection once `probe` has found the database failing after it
    /// was taken (a restart leaves it dead), and gives one back to sqlx once it has been kept
    /// for `keep_at_most` ([`KEEP_AT_MOST`] in the services).
    pub fn new(
        sqlx: PgPool,
        size: u32,
        probe: Probe,
        acquire_timeout: Duration,
        keep_at_most: Duration,
    ) -> Self {
        let size = usize::try_from(size).unwrap_or(usize::MAX).max(1);
        Self(Arc::new(Inner {
            sqlx,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            probe,
            acquire_timeout,
            keep_at_most,
        }))
    }

    /// A connection of its own until the lease is [released](Lease::release) or dropped;
    /// `PoolTimedOut` after the acquire timeout, `PoolClosed` once the pool closed.
    pub async fn acquire(&self) -> sqlx::Result<Lease> {
        tokio::time::timeout(self.0.acquire_timeout, self.lease())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn lease(&self) -> sqlx::Result<Lease> {
        let permit =
            (self.0.permits.clone().acquire_owned().await).map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let kept = self.0.idle_list().pop();
            let kept = match kept {
                Some(mut kept) if self.0.probe.failed_since(kept.since.elapsed()) => {
                    kept.connection.close_on_drop();
                    continue;
                }
                // Kept long enough, in use or idle: back through sqlx, whose return and acquire
                // below apply its lifetime and idle timeout.
                Some(kept) if kept.since.elapsed() >= self.0.keep_at_most => {
                    drop(kept);
                    continue;
                }
                Some(kept) => kept,
                None => {
                    let since = Instant::now();
                    Kept {
                        connection: self.0.sqlx.acquire().await?,
                        since,
                    }
                }
            };
            return Ok(Lease {
                kept,
                pool: self.clone(),
                _permit: permit,
            });
        }
    }

    /// Lends nothing more, hands the kept connections back to sqlx and closes its pool, waiting
    /// for the connections still lent.
    pub async fn close(&self) {
        // Under the lock that [`Lease::release`] takes, so that no connection is kept after.
        let kept = {
            let mut idle = self.0.idle_list();
            self.0.permits.close();
            std::mem::take(&mut *idle)
        };
        drop(kept);
        self.0.sqlx.close().await;
    }
}

impl Inner {
    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection of a [`Pool`], lent until [`Lease::release`] (back as it is: only once its
/// statements completed, a transaction among them committed or rolled back) or until dropped
/// (back through sqlx, which pings it first: what a failed or abandoned statement needs).
///
/// ```ignore
/// let mut lease = pool.acquire().await?;
/// let mut tx = sqlx::Connection::begin(&mut *lease).await?;
/// // statements on &mut *tx
/// tx.commit().await?;
/// lease.release();
/// ```
#[derive(Debug)]
pub struct Lease {
    kept: Kept,
    pool: Pool,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Gives the connection back for the next lease, unless the pool has closed meanwhile.
    pub fn release(self) {
        let Lease {
            kept,
            pool,
            _permit,
        } = self;
        // Checked under the lock: [`Pool::close`] closes and empties the list under it.
        let mut idle = pool.0.idle_list();
        if !pool.0.permits.is_closed() {
            idle.push(kept);
        }
        // The permit goes last, so that a lease waiting for it finds the connection kept.
    }
}

impl std::ops::Deref for Lease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.kept.connection
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.kept.connection
    }
}

/// Each statement on its own lease, released when the statement completed. Results come once
/// the statement has finished (all its rows held in memory), as `fetch_all` would have them.
impl<'p> Executor<'p> for &'_ Pool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, sqlx::Result<Either<PgQueryResult, PgRow>>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        stream::once(async move {
            let mut lease = pool.acquire().await?;
            let results: Vec<_> = lease.fetch_many(query).try_collect().await?;
            lease.release();
            Ok::<_, sqlx::Error>(stream::iter(results.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut lease = pool.acquire().await?;
            let row = lease.fetch_optional(query).await?;
            lease.release();
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<PgStatement>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut lease = pool.acquire().await?;
            let statement = lease.prepare_with(sql, parameters).await?;
            lease.release();
            Ok(statement)
        })
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<Describe<Postgres>>> {
        let pool = self.clone();
        Box::pin(async move {
            let mut lease = pool.acquire().await?;
            let described = lease.describe(sql).await?;
            lease.release();
            Ok(described)
        })
    }
}
