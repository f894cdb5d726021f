//! The audit log: entries and chain heads, search, the links verification checks, checkpoints
//! and purge; and the append every audited write makes inside its own transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;

use super::sql::{Store, Tx, db_run, tx_run};
use super::{StorageError, not_found_on_fk};
use crate::audit::{
    Actor, Checkpoint, CheckpointKind, Draft, Entry, Fields, Filter, GENESIS, Head, Link, Purged,
    Signer,
};

/// The columns of an audit entry, in `Entry` order (and the order every insert binds them).
macro_rules! entry_columns {
    () => {
        "cellule, seq, at_us, actor, actor_role, actor_org, action, case_id, case_ref, \
         target_kind, target_id, outcome, reason, request_id, cases, detail, prev_hash, hash, \
         mac, mac_key"
    };
}

/// The columns of a checkpoint, in `Checkpoint` order.
macro_rules! checkpoint_columns {
    () => {
        "cellule, seq, hash, signed_at_us, key_id, signature, kind"
    };
}

/// Audit entries per multi-row insert (20 parameters each: well under both backends' limits).
const INSERT_ROWS: usize = 500;

/// The audit log of each cellule.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends entries to the cellule's chain in one transaction; returns the new head.
    async fn append_audit(&self, cellule: &str, drafts: Vec<Draft>) -> Result<Head, StorageError>;
    /// Appends each group's entries to its cellule's chain, every group in one transaction (an
    /// event of the whole deployment recorded in every cellule, all or none); returns the new
    /// heads.
    async fn append_audit_groups(
        &self,
        groups: Vec<(String, Vec<Draft>)>,
    ) -> Result<Vec<(String, Head)>, StorageError>;
    async fn audit_head(&self, cellule: &str) -> Result<Option<Head>, StorageError>;
    /// Up to `limit` entries with a sequence above `after_seq`, in sequence order.
    async fn audit_entries(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Entry>, StorageError>;
    /// The [`Link`]s of the entries `after_seq < seq <= after_seq + limit`, in sequence order
    /// (fewer where entries are missing): what verification checks, each hash recomputed from
    /// the stored columns as the rows stream in, without an [`Entry`] per row.
    async fn audit_links(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Link>, StorageError>;
    /// Entries matching the filter, newest first.
    async fn search_audit(
        &self,
        cellule: &str,
        filter: &Filter,
    ) -> Result<Vec<Entry>, StorageError>;
    /// Entries about one case, oldest first: those naming its id (an entry that names a case's
    /// reference always names its id too) and those naming it in a set of cases (by id or by
    /// reference).
    async fn case_audit(
        &self,
        cellule: &str,
        case_id: &str,
        case_ref: &str,
    ) -> Result<Vec<Entry>, StorageError>;
    /// (id, reference) of a case, or of an erased case, given its id or its reference.
    async fn resolve_case(
        &self,
        cellule: &str,
        id_or_reference: &str,
    ) -> Result<Option<(String, String)>, StorageError>;
    /// Checkpoints of the cellule, by sequence.
    async fn audit_checkpoints(&self, cellule: &str) -> Result<Vec<Checkpoint>, StorageError>;
    /// Signs and stores a checkpoint at the current head (or returns the one already there);
    /// `None` when the chain is empty.
    async fn checkpoint_audit(
        &self,
        cellule: &str,
        signer: &Signer,
        kind: CheckpointKind,
        now: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>, StorageError>;
    /// Cellules whose head moved since their last checkpoint.
    async fn cellules_with_unsigned_audit(&self) -> Result<Vec<String>, StorageError>;
    /// Every chain's head sequence, by cellule.
    async fn audit_head_seqs(&self) -> Result<Vec<(String, i64)>, StorageError>;
    /// Audit retention: signs a `retention` checkpoint at the last entry older than
    /// `before_us`, moves the purge mark there, deletes the entries up to it and records the
    /// purge, naming `by` who asked for it, in one transaction.
    async fn purge_audit(
        &self,
        cellule: &str,
        before_us: i64,
        signer: &Signer,
        now: DateTime<Utc>,
        by: &Actor,
    ) -> Result<Purged, StorageError>;
}

/// An entry search; `$instr` is the backend's substring search (`instr`, `strpos`).
macro_rules! search_sql {
    ($instr:literal) => {
        concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = $1 \
               AND ($2 IS NULL OR actor = $2) \
               AND ($3 IS NULL OR case_ref = $3 OR ",
            $instr,
            "(cases, $10) > 0) \
               AND ($4 IS NULL OR action = $4) \
               AND ($5 IS NULL OR outcome = $5) \
               AND ($6 IS NULL OR at_us >= $6) \
               AND ($7 IS NULL OR at_us < $7) \
               AND ($8 IS NULL OR seq < $8) \
             ORDER BY seq DESC LIMIT $9"
        )
    };
}

/// The entries about one case; `$instr` as in [`search_sql!`].
macro_rules! case_audit_sql {
    ($instr:literal) => {
        concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = $1 AND case_id = $2 UNION SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE cellule = $1 AND cases IS NOT NULL AND (",
            $instr,
            "(cases, $3) > 0 OR ",
            $instr,
            "(cases, $4) > 0) ORDER BY seq"
        )
    };
}

#[async_trait]
impl AuditStore for Store {
    async fn append_audit(&self, cellule: &str, drafts: Vec<Draft>) -> Result<Head, StorageError> {
        let mut tx = self.begin().await?;
        let head = tx.append(cellule, drafts).await?;
        tx.commit().await?;
        Ok(head)
    }

    async fn append_audit_groups(
        &self,
        groups: Vec<(String, Vec<Draft>)>,
    ) -> Result<Vec<(String, Head)>, StorageError> {
        let mut tx = self.begin().await?;
        let heads = tx.append_groups(groups).await?;
        tx.commit().await?;
        Ok(heads)
    }

    async fn audit_head(&self, cellule: &str) -> Result<Option<Head>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT seq, hash, checkpoint_seq, purged_through FROM audit_heads \
                 WHERE cellule = $1",
            )
            .bind(cellule)
            .fetch_optional(c)
            .await?
        }))
    }

    async fn audit_entries(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                entry_columns!(),
                " FROM audit_entries WHERE cellule = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .bind(cellule)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(c)
            .await?
        }))
    }

    async fn audit_links(
        &self,
        cellule: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Link>, StorageError> {
        // A task of its own: the pages verification reads at once are hashed on as many
        // threads of the runtime.
        let store = Store::new(self.pool.clone());
        let cellule = cellule.to_owned();
        tokio::spawn(async move {
            let capacity = usize::try_from(limit.clamp(0, crate::audit::verify::PAGE)).unwrap_or(0);
            let mut links = Vec::with_capacity(capacity);
            let mut canonical = Vec::with_capacity(512);
            db_run!(store, c => {
                let mut rows = sqlx::query(concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM audit_entries WHERE cellule = $1 AND seq > $2 AND seq <= $2 + $3 \
                     ORDER BY seq"
                ))
                .bind(&cellule)
                .bind(after_seq)
                .bind(limit)
                .fetch(c);
                while let Some(row) = rows.try_next().await? {
                    links.push(link(&row, &mut canonical)?);
                }
            });
            Ok::<_, StorageError>(links)
        })
        .await
        .map_err(|e| StorageError::Other(format!("audit page task: {e}")))?
    }

    async fn search_audit(&self, cellule: &str, f: &Filter) -> Result<Vec<Entry>, StorageError> {
        let sql = self.pick(search_sql!("instr"), search_sql!("strpos"));
        Ok(db_run!(self, c => {
            sqlx::query_as(sql)
                .bind(cellule)
                .bind(&f.actor)
                .bind(&f.case_ref)
                .bind(&f.action)
                .bind(&f.outcome)
                .bind(f.from_us)
                .bind(f.to_us)
                .bind(f.before_seq)
                .bind(f.limit)
                .bind(f.case_ref.as_deref().map(crate::audit::case_ref_pattern))
                .fetch_all(c)
                .await?
        }))
    }

    async fn case_audit(
        &self,
        cellule: &str,
        case_id: &str,
        case_ref: &str,
    ) -> Result<Vec<Entry>, StorageError> {
        let sql = self.pick(case_audit_sql!("instr"), case_audit_sql!("strpos"));
        Ok(db_run!(self, c => {
            sqlx::query_as(sql)
                .bind(cellule)
                .bind(case_id)
                .bind(crate::audit::case_id_pattern(case_id))
                .bind(crate::audit::case_ref_pattern(case_ref))
                .fetch_all(c)
                .await?
        }))
    }

    async fn resolve_case(
        &self,
        cellule: &str,
        id_or_reference: &str,
    ) -> Result<Option<(String, String)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(
                "SELECT id, reference FROM cases \
                   WHERE cellule = $1 AND (id = $2 OR reference = $2) \
                 UNION ALL \
                 SELECT case_id, reference FROM erasures \
                   WHERE cellule = $1 AND (case_id = $2 OR reference = $2) \
                 LIMIT 1",
            )
            .bind(cellule)
            .bind(id_or_reference)
            .fetch_optional(c)
            .await?
        }))
    }

    async fn audit_checkpoints(&self, cellule: &str) -> Result<Vec<Checkpoint>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as(concat!(
                "SELECT ",
                checkpoint_columns!(),
                " FROM audit_checkpoints WHERE cellule = $1 ORDER BY seq, kind"
            ))
            .bind(cellule)
            .fetch_all(c)
            .await?
        }))
    }

    async fn checkpoint_audit(
        &self,
        cellule: &str,
        signer: &Signer,
        kind: CheckpointKind,
        now: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>, StorageError> {
        let mut tx = self.begin().await?;
        // Holds the head row until commit.
        let head: Option<(i64, Vec<u8>)> = tx_run!(&mut tx, c => {
            sqlx::query_as(
                "UPDATE audit_heads SET checkpoint_seq = seq WHERE cellule = $1 AND seq > 0 \
                 RETURNING seq, hash",
            )
            .bind(cellule)
            .fetch_optional(&mut *c)
            .await?
        });
        let Some((seq, hash)) = head else {
            tx.rollback().await?;
            return Ok(None);
        };
        let checkpoint = tx
            .insert_checkpoint(signer.sign(cellule, seq, &hash, now, kind))
            .await?;
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    async fn audit_head_seqs(&self) -> Result<Vec<(String, i64)>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_as("SELECT cellule, seq FROM audit_heads ORDER BY cellule")
                .fetch_all(c)
                .await?
        }))
    }

    async fn cellules_with_unsigned_audit(&self) -> Result<Vec<String>, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query_scalar(
                "SELECT cellule FROM audit_heads WHERE seq > checkpoint_seq ORDER BY cellule",
            )
            .fetch_all(c)
            .await?
        }))
    }

    async fn purge_audit(
        &self,
        cellule: &str,
        before_us: i64,
        signer: &Signer,
        now: DateTime<Utc>,
        by: &Actor,
    ) -> Result<Purged, StorageError> {
        let mut tx = self.begin().await?;
        let (purged_through, last) = tx_run!(&mut tx, c => {
            // Holds the head row until commit.
            let head: Option<i64> = sqlx::query_scalar(
                "UPDATE audit_heads SET purged_through = purged_through WHERE cellule = $1 \
                 RETURNING purged_through",
            )
            .bind(cellule)
            .fetch_optional(&mut *c)
            .await?;
            let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT seq, hash FROM audit_entries WHERE cellule = $1 AND at_us < $2 \
                 ORDER BY seq DESC LIMIT 1",
            )
            .bind(cellule)
            .bind(before_us)
            .fetch_optional(&mut *c)
            .await?;
            (head.unwrap_or(0), last)
        });
        let Some((seq, hash)) = last.filter(|(seq, _)| *seq > purged_through) else {
            tx.rollback().await?;
            return Ok(Purged {
                removed: 0,
                anchor: None,
            });
        };
        let anchor = tx
            .insert_checkpoint(signer.sign(cellule, seq, &hash, now, CheckpointKind::Retention))
            .await?;
        let removed = tx_run!(&mut tx, c => {
            sqlx::query("UPDATE audit_heads SET purged_through = $2 WHERE cellule = $1")
                .bind(cellule)
                .bind(seq)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM audit_entries WHERE cellule = $1 AND seq <= $2")
                .bind(cellule)
                .bind(seq)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        tx.append(
            cellule,
            vec![crate::audit::purge_entry(now, seq, before_us, by)],
        )
        .await?;
        tx.commit().await?;
        Ok(Purged {
            removed: i64::try_from(removed).unwrap_or(i64::MAX),
            anchor: Some(anchor),
        })
    }
}

/// The [`Link`] of one streamed entry row (its columns in `Entry` order), its text columns
/// borrowed from the row; `canonical` is a scratch buffer reused from row to row. A column that
/// cannot be read (a required one null, a value of another type) makes the row corrupt.
fn link<'r, R>(row: &'r R, canonical: &mut Vec<u8>) -> Result<Link, StorageError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use sqlx::Column;
    let name = |i: usize| row.columns().get(i).map_or("?", |c| c.name());
    let bad = |i: usize, e: sqlx::Error| {
        StorageError::Corrupt(format!("audit entry column {}: {e}", name(i)))
    };
    let text = |i: usize| {
        row.try_get::<Option<&str>, _>(i)
            .map(|v| v.map(str::as_bytes))
            .map_err(|e| bad(i, e))
    };
    let required = |v: Option<&'r [u8]>, i: usize| {
        v.ok_or_else(|| StorageError::Corrupt(format!("audit entry {} is null", name(i))))
    };
    let number = |i: usize| row.try_get::<i64, _>(i).map_err(|e| bad(i, e));
    let bytes = |i: usize| {
        let v = row.try_get::<Option<&[u8]>, _>(i).map_err(|e| bad(i, e))?;
        required(v, i)
    };
    let fields = Fields {
        cellule: required(text(0)?, 0)?,
        seq: number(1)?,
        at_us: number(2)?,
        actor: required(text(3)?, 3)?,
        actor_role: required(text(4)?, 4)?,
        actor_org: text(5)?,
        action: required(text(6)?, 6)?,
        case_id: text(7)?,
        case_ref: text(8)?,
        target_kind: text(9)?,
        target_id: text(10)?,
        outcome: required(text(11)?, 11)?,
        reason: text(12)?,
        request_id: text(13)?,
        cases: text(14)?,
        detail: text(15)?,
    };
    let mac = row
        .try_get::<Option<&[u8]>, _>(18)
        .map_err(|e| bad(18, e))?;
    let mac_key = row.try_get::<Option<i64>, _>(19).map_err(|e| bad(19, e))?;
    Ok(Link::of(&fields, bytes(16)?, bytes(17)?, canonical).with_mac(mac, mac_key))
}

impl Tx {
    /// Appends `drafts` to the chain of `cellule` inside this transaction; returns the new head.
    pub(crate) async fn append(
        &mut self,
        cellule: &str,
        drafts: Vec<Draft>,
    ) -> Result<Head, StorageError> {
        let heads = self
            .append_groups(vec![(cellule.to_owned(), drafts)])
            .await?;
        heads
            .into_iter()
            .next()
            .map(|(_, head)| head)
            .ok_or_else(|| StorageError::Other("an append returned no head".into()))
    }

    /// Appends each group's entries to its cellule's chain (one group per cellule); returns the
    /// new heads, by cellule.
    ///
    /// Three statements whatever the number of cellules (two on PostgreSQL, and one more per 500
    /// entries): the heads move forward by their groups' sizes (a chain's head row is created
    /// with the genesis hash on its first entry), which reserves the sequence numbers and
    /// returns each previous hash; the entries, chained here, go in multi-row inserts; the heads
    /// take their new hashes. Moving a head locks its
    /// row (PostgreSQL) or the transaction holds the write lock (SQLite), so concurrent appends
    /// queue up and each chain stays gap-free and linear. On PostgreSQL the rows of several
    /// heads are first locked in the order of their cellules, as every transaction taking more
    /// than one head does, so that two such transactions cannot deadlock.
    pub(crate) async fn append_groups(
        &mut self,
        mut groups: Vec<(String, Vec<Draft>)>,
    ) -> Result<Vec<(String, Head)>, StorageError> {
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        self.enqueue_notices(&mut groups).await?;
        let sizes: Vec<i64> = groups
            .iter()
            .map(|(_, d)| i64::try_from(d.len()).unwrap_or(i64::MAX))
            .collect();
        if groups.len() > 1 {
            let cellules: Vec<&str> = groups.iter().map(|(c, _)| c.as_str()).collect();
            tx_run!(self,
                sqlite _c => {},
                postgres c => {
                    // `ORDER BY` with `FOR UPDATE`: the rows are locked as the sort returns them.
                    sqlx::query(
                        "SELECT 1 FROM audit_heads WHERE cellule = ANY($1) ORDER BY cellule \
                         FOR UPDATE",
                    )
                    .bind(&cellules)
                    .execute(&mut *c)
                    .await?;
                },
            );
        }
        let moved: Vec<(String, i64, Vec<u8>, i64, i64)> = tx_run!(self, c => {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO audit_heads (cellule, seq, hash) ");
            q.push_values(groups.iter().zip(&sizes), |mut b, ((cellule, _), n)| {
                b.push_bind(cellule).push_bind(*n).push_bind(GENESIS.as_slice());
            });
            q.push(
                " ON CONFLICT (cellule) DO UPDATE SET seq = audit_heads.seq + excluded.seq \
                 RETURNING cellule, seq, hash, checkpoint_seq, purged_through",
            );
            q.build_query_as()
                .fetch_all(&mut *c)
                .await
                .map_err(not_found_on_fk)?
        });
        let mac = self.audit_mac()?;
        let mut heads = Vec::with_capacity(groups.len());
        let mut entries = Vec::new();
        for ((cellule, drafts), n) in groups.into_iter().zip(sizes) {
            let Some((_, seq, prev, checkpoint_seq, purged_through)) =
                moved.iter().find(|m| m.0 == cellule)
            else {
                return Err(StorageError::Other(format!(
                    "no chain head moved for {cellule}"
                )));
            };
            let mut hash = prev.clone();
            for (seq, draft) in (seq - n + 1..).zip(drafts) {
                let mut e = draft.into_entry(&cellule, seq, &hash);
                e.mac = Some(mac.tag(&e.hash));
                e.mac_key = Some(i64::from(mac.version()));
                hash.clone_from(&e.hash);
                entries.push(e);
            }
            heads.push((
                cellule,
                Head {
                    seq: *seq,
                    hash,
                    checkpoint_seq: *checkpoint_seq,
                    purged_through: *purged_through,
                },
            ));
        }
        if entries.is_empty() {
            return Ok(heads);
        }
        tx_run!(self,
            sqlite c => {
                for chunk in entries.chunks(INSERT_ROWS) {
                    let mut q = sqlx::QueryBuilder::new("");
                    push_entry_insert(&mut q, chunk);
                    q.build().execute(&mut *c).await?;
                }
                let mut q = sqlx::QueryBuilder::new("");
                push_head_hashes(&mut q, &heads);
                q.build().execute(&mut *c).await?;
            },
            // The last insert carries the heads' hashes in a data-modifying `WITH`: one round
            // trip fewer for every audited write.
            postgres c => {
                let chunks = entries.chunks(INSERT_ROWS);
                let last = chunks.len() - 1;
                for (i, chunk) in chunks.enumerate() {
                    let mut q = sqlx::QueryBuilder::new("");
                    if i == last {
                        q.push("WITH head AS (");
                        push_head_hashes(&mut q, &heads);
                        q.push(") ");
                    }
                    push_entry_insert(&mut q, chunk);
                    q.build().execute(&mut *c).await?;
                }
            },
        );
        Ok(heads)
    }

    /// Stores a checkpoint unless one of its kind exists at its sequence; returns the stored one.
    pub(crate) async fn insert_checkpoint(
        &mut self,
        c: Checkpoint,
    ) -> Result<Checkpoint, StorageError> {
        tx_run!(self, conn => {
            let existing: Option<Checkpoint> = sqlx::query_as(concat!(
                "SELECT ",
                checkpoint_columns!(),
                " FROM audit_checkpoints WHERE cellule = $1 AND seq = $2 AND kind = $3"
            ))
            .bind(&c.cellule)
            .bind(c.seq)
            .bind(&c.kind)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(existing) = existing {
                return Ok(existing);
            }
            sqlx::query(concat!(
                "INSERT INTO audit_checkpoints (",
                checkpoint_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(&c.cellule)
            .bind(c.seq)
            .bind(&c.hash)
            .bind(c.signed_at_us)
            .bind(&c.key_id)
            .bind(&c.signature)
            .bind(&c.kind)
            .execute(&mut *conn)
            .await?;
        });
        Ok(c)
    }
}

/// `INSERT INTO audit_entries …` of a chunk of entries, in [`entry_columns!`] order.
fn push_entry_insert<'a, DB>(q: &mut sqlx::QueryBuilder<'a, DB>, chunk: &'a [Entry])
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<Vec<u8>>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(concat!(
        "INSERT INTO audit_entries (",
        entry_columns!(),
        ") "
    ));
    q.push_values(chunk, |mut b, e| {
        b.push_bind(&e.cellule)
            .push_bind(e.seq)
            .push_bind(e.at_us)
            .push_bind(&e.actor)
            .push_bind(&e.actor_role)
            .push_bind(&e.actor_org)
            .push_bind(&e.action)
            .push_bind(&e.case_id)
            .push_bind(&e.case_ref)
            .push_bind(&e.target_kind)
            .push_bind(&e.target_id)
            .push_bind(&e.outcome)
            .push_bind(&e.reason)
            .push_bind(&e.request_id)
            .push_bind(&e.cases)
            .push_bind(&e.detail)
            .push_bind(&e.prev_hash)
            .push_bind(&e.hash)
            .push_bind(&e.mac)
            .push_bind(e.mac_key);
    });
}

/// `UPDATE audit_heads …` setting each head's hash (`column1`, `column2`: the names both
/// backends give a `VALUES` list's columns).
fn push_head_hashes<'a, DB>(q: &mut sqlx::QueryBuilder<'a, DB>, heads: &'a [(String, Head)])
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push("UPDATE audit_heads SET hash = v.column2 FROM (");
    q.push_values(heads, |mut b, (cellule, head)| {
        b.push_bind(cellule).push_bind(&head.hash);
    });
    q.push(") AS v WHERE audit_heads.cellule = v.column1");
}
