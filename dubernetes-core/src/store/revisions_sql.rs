//! Revisions in the SQL both stores speak (numbering, superseding, pruning,
//! decoding): written once, expanded for each database's transaction and row
//! types by [`revision_functions!`] in `sqlite/revisions.rs` and
//! `postgres/revisions.rs`.

/// Defines `record_revision`, `prune_revisions` and `decode_revision` for
/// one database: `$db` (e.g. `sqlx::Sqlite`) and its row type.
macro_rules! revision_functions {
    ($db:ty, $row:ty) => {
        /// Appends a revision for `spec` (the next number) and supersedes any still progressing.
        pub(super) async fn record_revision(
            tx: &mut sqlx::Transaction<'_, $db>,
            spec: &PodSpec,
            json: &str,
            now: i64,
            note: Option<(&str, &str)>,
        ) -> Result<()> {
            let hash = spec.revision_hash();
            let latest = sqlx::query("SELECT number, hash FROM revisions WHERE pod = $1 ORDER BY number DESC LIMIT 1")
                .bind(&spec.name)
                .fetch_optional(&mut **tx)
                .await?;
            let (number, latest_hash) = match &latest {
                Some(r) => (r.try_get::<i64, _>("number")?, Some(r.try_get::<String, _>("hash")?)),
                None => (0, None),
            };
            if latest_hash.as_deref() == Some(hash.as_str()) {
                // Only replicas, host or policies changed: same revision, refresh its spec.
                sqlx::query("UPDATE revisions SET spec = $3 WHERE pod = $1 AND number = $2")
                    .bind(&spec.name)
                    .bind(number)
                    .bind(json)
                    .execute(&mut **tx)
                    .await?;
                return Ok(());
            }
            sqlx::query(
                "UPDATE revisions SET outcome = 'superseded', finished_at = $2 WHERE pod = $1 AND outcome = 'progressing'",
            )
            .bind(&spec.name)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO revisions (pod, number, hash, spec, created_at, outcome, reason, message)
                 VALUES ($1, $2, $3, $4, $5, 'progressing', $6, $7)",
            )
            .bind(&spec.name)
            .bind(number + 1)
            .bind(&hash)
            .bind(json)
            .bind(now)
            .bind(note.map(|n| n.0))
            .bind(note.map(|n| n.1))
            .execute(&mut **tx)
            .await?;
            prune_revisions(tx, &spec.name).await
        }

        /// Deletes a pod's revisions beyond the newest [`MAX_REVISIONS`], keeping
        /// whatever a rollback or `rollout undo` needs: the current (newest) one, the
        /// last complete one, and the last complete one whose hash differs from the
        /// current's (what [`Store::fail_and_roll_back`] goes back to).
        async fn prune_revisions(tx: &mut sqlx::Transaction<'_, $db>, pod: &str) -> Result<()> {
            sqlx::query(
                "DELETE FROM revisions WHERE pod = $1
                   AND number <= (SELECT MAX(number) FROM revisions WHERE pod = $1) - $2
                   AND number != (SELECT COALESCE(MAX(number), -1) FROM revisions WHERE pod = $1 AND outcome = 'complete')
                   AND number != (SELECT COALESCE(MAX(number), -1) FROM revisions WHERE pod = $1 AND outcome = 'complete'
                        AND hash != (SELECT hash FROM revisions WHERE pod = $1 ORDER BY number DESC LIMIT 1))",
            )
            .bind(pod)
            .bind(MAX_REVISIONS)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Writes a revision's `reason` and `message` (a deploy hook's result)
        /// if its outcome is still `outcome`; returns whether it was.
        pub(super) async fn note_revision(
            tx: &mut sqlx::Transaction<'_, $db>,
            pod: &str,
            number: i64,
            outcome: &str,
            reason: &str,
            message: &str,
        ) -> Result<bool> {
            let message = crate::store::cut_message(message);
            let noted = sqlx::query(
                "UPDATE revisions SET reason = $4, message = $5 WHERE pod = $1 AND number = $2 AND outcome = $3",
            )
            .bind(pod)
            .bind(number)
            .bind(outcome)
            .bind(reason)
            .bind(message.as_ref())
            .execute(&mut **tx)
            .await?;
            Ok(noted.rows_affected() > 0)
        }

        pub(super) fn decode_revision(row: &$row) -> Result<Revision> {
            let spec: String = row.try_get("spec")?;
            Ok(Revision {
                number: row.try_get("number")?,
                hash: row.try_get("hash")?,
                spec: serde_json::from_str(&spec).map_err(|e| Error::Store(crate::error::StoreError::decode(e)))?,
                created_at: row.try_get("created_at")?,
                outcome: crate::store::sqlite::parse_word(row.try_get::<String, _>("outcome")?)?,
                reason: row.try_get("reason")?,
                message: row.try_get("message")?,
                finished_at: row.try_get("finished_at")?,
            })
        }
    };
}
pub(crate) use revision_functions;
